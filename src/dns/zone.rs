//! hickory `ZoneHandler` for the local domain and the subnets' reverse zones, reading `names`.
