//! The reconciler: Function → revisions, Deployments, Services and status.
