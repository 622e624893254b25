//! Generated gRPC contracts of berth's services, one module per proto package.
#![allow(clippy::all, clippy::pedantic)]

pub mod image {
    pub mod v1 {
        tonic::include_proto!("berth.image.v1");
    }
}
pub mod supervisor {
    pub mod v1 {
        tonic::include_proto!("berth.supervisor.v1");
    }
}
pub mod network {
    pub mod v1 {
        tonic::include_proto!("berth.network.v1");
    }
}
pub mod volume {
    pub mod v1 {
        tonic::include_proto!("berth.volume.v1");
    }
}
pub mod logs {
    pub mod v1 {
        tonic::include_proto!("berth.logs.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("berth.events.v1");
    }
}
pub mod engine {
    pub mod v1 {
        tonic::include_proto!("berth.engine.v1");
    }
}

/// Encoded `FileDescriptorSet` of every berth proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/berth_descriptor.bin"));
