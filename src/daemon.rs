//! Wiring: load config, recover leases, bind sockets, spawn the DHCP and DNS tasks, handle
//! signals, shut down.
