//! Writes many copies of a configuration template: the 10,000 Ingresses of weir and the
//! 10,000 `server` blocks of nginx.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The placeholder replaced by the index.
pub const PLACEHOLDER: &str = "{{i}}";

/// Arguments of `gen`.
#[derive(clap::Args)]
pub struct Args {
    /// The template file; every `{{i}}` becomes the index.
    #[arg(long)]
    template: PathBuf,
    /// Where to write: with `{{i}}` one file per index (`dir/ing-{{i}}.yaml`), without it all
    /// copies concatenated into one file.
    #[arg(long)]
    dest: String,
    /// The first index.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// How many copies.
    #[arg(long)]
    count: u64,
}

/// Writes the copies.
pub fn run(args: Args) -> anyhow::Result<()> {
    let template = std::fs::read_to_string(&args.template)
        .with_context(|| format!("cannot read {}", args.template.display()))?;
    let indices = args.start..args.start + args.count;
    if args.dest.contains(PLACEHOLDER) {
        for i in indices {
            let path = instantiate(&args.dest, i);
            std::fs::write(&path, instantiate(&template, i))
                .with_context(|| format!("cannot write {path}"))?;
        }
    } else {
        let file = std::fs::File::create(Path::new(&args.dest))
            .with_context(|| format!("cannot create {}", args.dest))?;
        let mut out = std::io::BufWriter::new(file);
        for i in indices {
            out.write_all(instantiate(&template, i).as_bytes())?;
        }
        out.flush()?;
    }
    Ok(())
}

/// `text` with every `{{i}}` replaced by `i`.
pub fn instantiate(text: &str, i: u64) -> String {
    text.replace(PLACEHOLDER, &i.to_string())
}
