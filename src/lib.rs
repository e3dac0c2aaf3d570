//! lbaas contracts: the gRPC code generated from `proto/`, and the server kit (health, reflection,
//! telemetry, shutdown) that every service assembles the same way.

pub mod capability;
pub mod logformat;
pub mod server;
pub mod tls_options;

pub mod api {
    //! Generated from `proto/lbaas/api/v1`.
    pub mod v1 {
        //! Generated from `proto/lbaas/api/v1/api.proto`; never edited by hand.
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("lbaas.api.v1");
    }
}

pub mod scheduler {
    //! Generated from `proto/lbaas/scheduler/v1`.
    pub mod v1 {
        //! Generated from `proto/lbaas/scheduler/v1/scheduler.proto`; never edited by hand.
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("lbaas.scheduler.v1");
    }
}

pub mod agent {
    //! Generated from `proto/lbaas/agent/v1`.
    pub mod v1 {
        //! Generated from `proto/lbaas/agent/v1/agent.proto`; never edited by hand.
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("lbaas.agent.v1");
    }
}

pub mod dataplane {
    //! Generated from `proto/lbaas/dataplane/v1`.
    pub mod v1 {
        //! Generated from `proto/lbaas/dataplane/v1/dataplane.proto`; never edited by hand.
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("lbaas.dataplane.v1");
    }
}

/// Every contract's file descriptors, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lbaas_descriptor.bin"));
