//! Saturation: servers, backends, frontends, the process and nginx's workers against their
//! connection limits, and queues.
