//! The `--manifests DIR` source. (Being written.)
