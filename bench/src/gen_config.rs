//! Writes many copies of a configuration template: the 10,000 Ingresses of weir and the
//! 10,000 `server` blocks of nginx; or creates them in a Kubernetes API server (`--post`).

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
    #[arg(long, required_unless_present = "post", conflicts_with = "post")]
    dest: Option<String>,
    /// Instead of writing files, `POST` each copy to this API path
    /// (`/apis/networking.k8s.io/v1/namespaces/NS/ingresses`); objects that exist are kept.
    #[arg(long)]
    pub post: Option<String>,
    /// The API server (with `--post`).
    #[command(flatten)]
    api: crate::kube::ApiArgs,
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
    let dest = args.dest.context("--dest or --post is required")?;
    if dest.contains(PLACEHOLDER) {
        for i in indices {
            let path = instantiate(&dest, i);
            std::fs::write(&path, instantiate(&template, i))
                .with_context(|| format!("cannot write {path}"))?;
        }
    } else {
        let file = std::fs::File::create(Path::new(&dest))
            .with_context(|| format!("cannot create {dest}"))?;
        let mut out = std::io::BufWriter::new(file);
        for i in indices {
            out.write_all(instantiate(&template, i).as_bytes())?;
        }
        out.flush()?;
    }
    Ok(())
}

/// Connections `post` creates the copies over, each taking every `POSTERS`-th index.
const POSTERS: u64 = 8;

/// Creates the copies in the API server, over a few connections at once.
pub async fn post(args: Args) -> anyhow::Result<()> {
    let template = std::fs::read_to_string(&args.template)
        .with_context(|| format!("cannot read {}", args.template.display()))?;
    let path = args.post.context("--post is required")?;
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..POSTERS.min(args.count) {
        let (api, template, path) = (args.api.clone(), template.clone(), path.clone());
        let indices = (args.start + first..args.start + args.count).step_by(POSTERS as usize);
        tasks.spawn(async move {
            let mut client = crate::kube::ApiClient::connect(&api).await?;
            for i in indices {
                client.post(&path, instantiate(&template, i), true).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// `text` with every `{{i}}` replaced by `i`.
pub fn instantiate(text: &str, i: u64) -> String {
    text.replace(PLACEHOLDER, &i.to_string())
}
