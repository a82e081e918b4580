//! The async DHCP loop (to be written).
