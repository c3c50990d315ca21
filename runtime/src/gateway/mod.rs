//! The gateway: the one proxy hop in front of every function, and the activator while a revision is at zero.
