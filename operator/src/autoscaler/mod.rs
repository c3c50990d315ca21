//! The autoscaler: metrics sources, the pure `decide()`, keep-alive policies and the actuator loop.
