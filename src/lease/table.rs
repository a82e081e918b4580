//! Leases indexed by address, client and expiry. (to be written)
