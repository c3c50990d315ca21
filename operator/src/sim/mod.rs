//! `flint sim`: replays an invocation trace through the autoscaler in simulated time.
