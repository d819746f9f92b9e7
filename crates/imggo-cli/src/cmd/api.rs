//! Thin subcommands over the client: `patterns`, `jobs`, `webhooks` and `webhook listen`.
//! Every object is printed as one JSON line on stdout.

use std::net::SocketAddr;
use std::process::ExitCode;

use futures_util::StreamExt;
use imggo::core::{
    CreatePattern, CreateWebhook, Error, ListPatterns, PatternFormat, PatternSchemas, ResultFormat,
    Secret, UpdatePattern,
};
use imggo::http::{Client, ReceiverOptions, WebhookReceiver};
use serde::Serialize;

use super::common::{runtime, usage_error, Connection, FileConfig, Hooks};

fn print<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).expect("API types serialise"));
}

/// Exit 1 with the error for a failed API call (2 for configuration problems).
fn failed(e: &Error) -> ExitCode {
    eprintln!("imggo: {e}");
    match e {
        Error::Config(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

fn client(conn: &Connection) -> Result<(tokio::runtime::Runtime, Client), ExitCode> {
    let rt = runtime();
    let file = FileConfig::load().map_err(|e| usage_error(&e))?;
    let client = rt
        .block_on(conn.client(&file, Hooks::default()))
        .map_err(|e| usage_error(&e))?;
    Ok((rt, client))
}

/// A JSON value from an argument: inline JSON, or `@file.json`.
fn json_arg(text: &str) -> Result<serde_json::Value, Error> {
    let raw = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?,
        None => text.to_owned(),
    };
    serde_json::from_str(&raw).map_err(|e| Error::Config(format!("invalid JSON {text:?}: {e}")))
}

/// `imggo patterns ...`.
#[derive(Debug, clap::Args)]
pub struct PatternsArgs {
    #[command(subcommand)]
    cmd: PatternsCmd,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, clap::Subcommand)]
enum PatternsCmd {
    /// Every pattern (all pages), one JSON line each.
    List {
        /// Only active (`true`) or inactive (`false`) patterns.
        #[arg(long)]
        active: Option<bool>,
    },
    /// One pattern.
    Get {
        /// Pattern id.
        id: String,
    },
    /// Create a pattern.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Instructions for the model.
        #[arg(long)]
        instructions: String,
        /// Output format: json, yaml, xml, csv or text.
        #[arg(long, default_value = "json")]
        format: String,
        /// JSON schema: inline JSON or @file.json.
        #[arg(long)]
        schema: Option<String>,
    },
    /// Change a pattern (bumps its version).
    Update {
        /// Pattern id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New instructions.
        #[arg(long)]
        instructions: Option<String>,
        /// New JSON schema: inline JSON or @file.json.
        #[arg(long)]
        schema: Option<String>,
        /// Activate or deactivate.
        #[arg(long)]
        active: Option<bool>,
        /// Publish the change as a new version.
        #[arg(long)]
        publish_new_version: bool,
    },
    /// Delete a pattern.
    Delete {
        /// Pattern id.
        id: String,
    },
}

/// Runs `imggo patterns`.
pub fn patterns(args: PatternsArgs) -> ExitCode {
    let (rt, client) = match client(&args.conn) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result: Result<(), Error> = rt.block_on(async {
        match args.cmd {
            PatternsCmd::List { active } => {
                let query = ListPatterns {
                    is_active: active,
                    per_page: Some(100),
                    ..ListPatterns::default()
                };
                let mut stream = std::pin::pin!(client.list_patterns(query));
                while let Some(p) = stream.next().await {
                    print(&p?);
                }
            }
            PatternsCmd::Get { id } => print(&client.get_pattern(&id).await?),
            PatternsCmd::Create {
                name,
                instructions,
                format,
                schema,
            } => {
                let body = CreatePattern {
                    name,
                    instructions,
                    format: Some(PatternFormat::parse(&format)),
                    schemas: PatternSchemas {
                        json_schema: schema.as_deref().map(json_arg).transpose()?,
                        ..PatternSchemas::default()
                    },
                    ..CreatePattern::default()
                };
                print(&client.create_pattern(&body).await?)
            }
            PatternsCmd::Update {
                id,
                name,
                instructions,
                schema,
                active,
                publish_new_version,
            } => {
                let body = UpdatePattern {
                    name,
                    instructions,
                    schemas: PatternSchemas {
                        json_schema: schema.as_deref().map(json_arg).transpose()?,
                        ..PatternSchemas::default()
                    },
                    is_active: active,
                    publish_new_version: publish_new_version.then_some(true),
                    ..UpdatePattern::default()
                };
                print(&client.update_pattern(&id, &body).await?)
            }
            PatternsCmd::Delete { id } => print(&client.delete_pattern(&id).await?),
        }
        Ok(())
    });
    result.map_or_else(|e| failed(&e), |()| ExitCode::SUCCESS)
}

/// `imggo jobs get ID [--format yaml]`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    cmd: JobsCmd,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, clap::Subcommand)]
enum JobsCmd {
    /// One job: JSON, or the raw result in another format.
    Get {
        /// Job id.
        id: String,
        /// json (default), yaml, xml, csv or text.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

/// Runs `imggo jobs`.
pub fn jobs(args: JobsArgs) -> ExitCode {
    let (rt, client) = match client(&args.conn) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let JobsCmd::Get { id, format } = args.cmd;
    let Some(format) = ResultFormat::parse(&format) else {
        return usage_error(&format!(
            "--format {format:?}: want json, yaml, xml, csv or text"
        ));
    };
    let result = rt.block_on(async {
        if format == ResultFormat::Json {
            print(&client.get_job(&id).await?);
        } else {
            let r = client.get_job_formatted(&id, format).await?;
            print!("{}", r.body);
        }
        Ok::<_, Error>(())
    });
    result.map_or_else(|e| failed(&e), |()| ExitCode::SUCCESS)
}

/// `imggo webhooks list|create|delete`.
#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    cmd: WebhooksCmd,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, clap::Subcommand)]
enum WebhooksCmd {
    /// Registered webhooks.
    List,
    /// Register a webhook.
    Create {
        /// Where events are POSTed.
        #[arg(long)]
        url: String,
        /// Events (default: job.succeeded and job.failed).
        #[arg(long = "event")]
        events: Vec<String>,
        /// Signing secret, at least 16 characters (else the server makes one and shows it
        /// once).
        #[arg(long, env = "IMGGO_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Remove a webhook.
    Delete {
        /// Webhook id.
        id: String,
    },
}

/// Runs `imggo webhooks`.
pub fn webhooks(args: WebhooksArgs) -> ExitCode {
    let (rt, client) = match client(&args.conn) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        match args.cmd {
            WebhooksCmd::List => {
                for w in client.list_webhooks().await? {
                    print(&w);
                }
            }
            WebhooksCmd::Create {
                url,
                events,
                secret,
            } => {
                if secret.as_ref().is_some_and(|s| s.len() < 16) {
                    return Err(Error::Config(
                        "--secret must be at least 16 characters".into(),
                    ));
                }
                let w = client
                    .create_webhook(&CreateWebhook {
                        url,
                        events,
                        secret: secret.map(Secret::new),
                    })
                    .await?;
                // The one moment the secret is shown: on purpose, to the user who made it.
                let mut v = serde_json::to_value(&w).expect("webhook serialises");
                if let Some(s) = &w.secret {
                    v["secret"] = serde_json::Value::String(s.expose().to_owned());
                }
                print(&v);
            }
            WebhooksCmd::Delete { id } => print(&client.delete_webhook(&id).await?),
        }
        Ok::<_, Error>(())
    });
    result.map_or_else(|e| failed(&e), |()| ExitCode::SUCCESS)
}

/// `imggo webhook listen --addr A --secret S`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    cmd: WebhookCmd,
}

#[derive(Debug, clap::Subcommand)]
enum WebhookCmd {
    /// Receive deliveries, verify their signatures, print each event as a JSON line.
    Listen {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: SocketAddr,
        /// The webhook's signing secret.
        #[arg(long, env = "IMGGO_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
    },
}

/// Runs `imggo webhook listen` until interrupted.
pub fn webhook(args: WebhookArgs) -> ExitCode {
    let WebhookCmd::Listen { addr, secret } = args.cmd;
    runtime().block_on(async move {
        let (local, mut receiver) = match WebhookReceiver::bind(
            addr,
            Secret::new(secret),
            ReceiverOptions::default(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return usage_error(&e),
        };
        eprintln!("imggo: listening for webhooks on http://{local}/");
        loop {
            tokio::select! {
                ev = receiver.next() => match ev {
                    Some(ev) => print(&ev),
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        receiver.shutdown().await;
        ExitCode::SUCCESS
    })
}
