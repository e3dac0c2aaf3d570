//! `lbctl certificate create|list|show|delete`: the TLS certificates TERMINATED_HTTPS listeners
//! serve (lbaas keeps them itself, where Octavia uses Barbican; a listener names one with
//! `--default-tls-container-ref ID` and `--sni-container-refs ID...`).
use std::path::PathBuf;

use anyhow::Context as _;
use lbaas::api::v1 as pb;

use crate::{client::CallExt as _, common::Ctx, render};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Upload a certificate and its private key.
    Create(Create),
    /// List certificates.
    List {
        #[command(flatten)]
        filter: crate::common::ListFilterArgs,
    },
    /// Show a certificate (never its key).
    Show {
        /// Certificate (name or id).
        certificate: String,
    },
    /// Delete a certificate no listener uses.
    Delete {
        /// Certificate (name or id).
        certificate: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// A name for the certificate.
    #[arg(long)]
    pub name: Option<String>,
    /// The certificate (PEM), optionally followed by its intermediates.
    #[arg(long, value_name = "FILE")]
    pub certificate_file: PathBuf,
    /// The private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub private_key_file: PathBuf,
    /// Intermediate certificates (PEM), appended to the certificate.
    #[arg(long, value_name = "FILE")]
    pub intermediates_file: Option<PathBuf>,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let mut certificate_pem = read(&args.certificate_file)?;
            if let Some(path) = &args.intermediates_file {
                if !certificate_pem.ends_with('\n') {
                    certificate_pem.push('\n');
                }
                certificate_pem.push_str(&read(path)?);
            }
            let created = api
                .certs
                .clone()
                .create_certificate(pb::CreateCertificateRequest {
                    certificate: Some(pb::Certificate {
                        name: args.name.unwrap_or_default(),
                        certificate_pem,
                        private_key_pem: read(&args.private_key_file)?,
                        ..Default::default()
                    }),
                })
                .await
                .api()?;
            ctx.out.show(&render::certificate(&created));
        }
        Command::List { filter } => {
            let items: Vec<_> = api
                .certificates(filter.to_proto()?.as_ref())
                .await?
                .iter()
                .map(render::certificate)
                .collect();
            ctx.out.list(render::CERTIFICATE_COLUMNS, &items);
        }
        Command::Show { certificate } => {
            let id = api.certificate_id(&certificate).await?;
            ctx.out
                .show(&render::certificate(&api.get_certificate(&id).await?));
        }
        Command::Delete { certificate } => {
            let id = api.certificate_id(&certificate).await?;
            api.certs
                .clone()
                .delete_certificate(pb::DeleteCertificateRequest { id })
                .await
                .api()?;
        }
    }
    Ok(())
}
