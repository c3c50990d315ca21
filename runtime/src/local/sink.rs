//! The gateway as the local backend's endpoint sink: replicas go straight
//! into the gateway's rotation, and the gateway's in-flight counts decide
//! when a draining replica may stop.

use flint_api::backend::{Endpoint, RevisionKey};

use super::EndpointSink;
use crate::gateway::Gateway;

impl EndpointSink for Gateway {
    fn set_endpoints(&self, revision: &RevisionKey, endpoints: Vec<Endpoint>) {
        Gateway::set_endpoints(self, revision, endpoints);
    }

    fn in_flight(&self, revision: &RevisionKey, endpoint_id: &str) -> usize {
        self.revision(revision)
            .and_then(|state| state.in_flight(endpoint_id))
            .map_or(0, |n| n as usize)
    }
}
