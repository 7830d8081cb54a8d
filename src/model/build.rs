//! `build`: Input → RouteTable + diagnostics. (Being written.)

use super::{BuildConfig, Built, Input, RouteTableBuilder};

/// Builds the routing table for `input`. Never fails.
pub fn build(_input: &Input, _config: &BuildConfig) -> Built {
    Built {
        table: RouteTableBuilder::new().build(),
        diagnostics: Vec::new(),
        ingresses: Vec::new(),
    }
}
