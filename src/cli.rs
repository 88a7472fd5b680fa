//! Command-line interface (contract §1). `anyhow` lives here, at the edge.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use switchyard::app::{self, Options};
use switchyard::config::{self, Config};
use switchyard::provider;
use switchyard::sim::Simulator;
use switchyard::telemetry;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "A multi-model routing gateway")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway on a routes file.
    Serve {
        /// Routes file; else $SWITCHYARD_CONFIG, else ./routes.toml.
        #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "routes.toml")]
        config: PathBuf,
    },
    /// Run the gateway and simulated vendors in one process, on loopback.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: SocketAddr,
        /// Run a fleet: this many replicas sharing one throwaway
        /// redis-server (needs redis-server on PATH), on the listen and
        /// admin ports counting up.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        replicas: u16,
    },
    /// Run the vendor simulator alone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:9900")]
        listen: SocketAddr,
    },
    /// Validate a routes file.
    Check {
        #[arg(default_value = "routes.toml")]
        path: PathBuf,
        /// Show which routes and targets differ from this other file.
        #[arg(long)]
        diff: Option<PathBuf>,
    },
    /// Show the live table from a running gateway.
    #[command(alias = "routes")]
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Show the fleet's replicas (fleet mode) instead of the table.
        #[arg(long)]
        fleet: bool,
    },
    /// Take a target out of every route at once.
    Suspend {
        target: String,
        #[arg(long)]
        reason: Option<String>,
        /// How long, e.g. 30m or 2h; until resumed when absent.
        #[arg(long = "for")]
        for_: Option<String>,
        /// Fleet mode: return once written, without waiting for the acks.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Put a suspended target back.
    Resume {
        target: String,
        /// Fleet mode: return once written, without waiting for the acks.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Manage the gateway's own API keys for apps (in the keys file, or
    /// with --fleet in the fleet's Redis).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        /// Fleet mode: the keys in Redis, shared by every replica at once
        /// (no reload needed); revoking refuses the key fleet-wide.
        #[arg(long, global = true)]
        fleet: bool,
        /// Redis of the fleet (with --fleet); else the routes file's
        /// `[fleet] redis_url`.
        #[arg(long, env = "SWITCHYARD_REDIS_URL", global = true)]
        redis_url: Option<String>,
        /// Routes file naming the keys file and the secret's env var.
        #[arg(
            long,
            env = "SWITCHYARD_CONFIG",
            default_value = "routes.toml",
            global = true
        )]
        config: PathBuf,
    },
    /// Chaos drills: rehearse a vendor outage, get a pass/fail report.
    Drill {
        #[command(subcommand)]
        command: DrillCommand,
    },
    /// Abuse detection: scan a traffic log, or generate a labelled one.
    Abuse {
        #[command(subcommand)]
        command: AbuseCommand,
    },
    /// Ask a running gateway to re-read its routes file.
    Reload {
        /// Apply the new table even if it drops routes that took traffic in
        /// the last minute (refused otherwise).
        #[arg(long)]
        allow_removals: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once and never stored.
    Create {
        name: String,
        /// Routes it may use, comma-separated; all when absent.
        #[arg(long, value_delimiter = ',')]
        routes: Vec<String>,
        /// Lifetime, e.g. 90d.
        #[arg(long)]
        expires: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u32>,
    },
    /// List keys (names, scopes, limits; never secrets).
    List,
    /// Revoke a key by name.
    Revoke { name: String },
    /// Lift the abuse quarantine of a key on a running gateway (audited).
    Unquarantine {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum AbuseCommand {
    /// Flag campaign keys in a traffic log (contract §9); one JSON line per flag.
    Scan {
        /// The traffic log (JSON lines sorted by ts); `-` for stdin.
        file: PathBuf,
        /// Write flags here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a labelled synthetic traffic log (genuine and campaign families).
    Generate {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated hours.
        #[arg(long, default_value_t = 6.0)]
        hours: f64,
        /// The traffic log to write.
        #[arg(long)]
        out: PathBuf,
        /// Where to write the labels (key, family, campaign) as JSON lines.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Run a drill file; exit 0 only if every SLO held.
    Run {
        /// The drill file (TOML), e.g. drills/primary-suspended.toml.
        file: PathBuf,
        /// Report directory (default drill-reports/<name>-<unix time>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data plane of a running gateway; without it the drill is self-contained.
        #[arg(long)]
        gateway: Option<String>,
        /// Admin API of that gateway (default http://127.0.0.1:9901).
        #[arg(long, requires = "gateway")]
        admin: Option<String>,
        /// The simulator that gateway's providers point at (sim faults).
        #[arg(long, requires = "gateway")]
        sim: Option<String>,
        /// App key for the drill's requests (default "drill").
        #[arg(long, env = "SWITCHYARD_DRILL_APP_KEY")]
        app_key: Option<String>,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Admin API of the running gateway.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    admin: String,
}

impl Cli {
    /// A drill draws its own progress line; the gateway it runs in-process
    /// should only speak up for warnings.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Drill { .. } => "warn",
            _ => "info",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(&config).await,
        Command::Demo {
            listen,
            admin_listen,
            replicas: 1,
        } => demo(listen, admin_listen).await,
        Command::Demo {
            listen,
            admin_listen,
            replicas,
        } => demo_fleet(listen, admin_listen, replicas).await,
        Command::Sim { listen } => {
            let addr = Simulator::new()
                .spawn(listen)
                .await
                .context("starting the simulator")?;
            println!("simulator listening on http://{addr}");
            println!("  anthropic: http://{addr}/anthropic   openai: http://{addr}/openai/v1");
            println!(
                "  gemini:    http://{addr}/gemini/v1beta   open-weight: http://{addr}/local/v1"
            );
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { path, diff } => check(&path, diff.as_deref()),
        Command::Keys {
            command: KeysCommand::Unquarantine { name, admin },
            ..
        } => {
            let path = format!("/admin/keys/{name}/unquarantine");
            let v = admin_call(&admin, reqwest::Method::POST, &path, None).await?;
            let was = &v["was"];
            if v["unquarantined"] == false {
                // Fleet mode: not held here, lifted on the replicas that do.
                println!("key `{name}` was not quarantined on this replica; lifted fleet-wide");
            } else {
                println!(
                    "key `{name}` unquarantined (it was {} after a {} flag); its requests are served again",
                    was["action"].as_str().unwrap_or("quarantined"),
                    was["kind"].as_str().unwrap_or("abuse")
                );
            }
            warn_unpersisted(&v);
            Ok(fleet_outcome(&v))
        }
        Command::Keys {
            command,
            config,
            fleet: true,
            redis_url,
        } => fleet_keys(command, &config, redis_url).await,
        Command::Keys {
            command, config, ..
        } => keys(command, &config),
        Command::Drill {
            command:
                DrillCommand::Run {
                    file,
                    out,
                    gateway,
                    admin,
                    sim,
                    app_key,
                },
        } => {
            let opts = switchyard::drill::RunOptions {
                file,
                out,
                gateway,
                admin,
                sim,
                app_key,
                admin_token: std::env::var("SWITCHYARD_ADMIN_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty()),
                progress: true,
            };
            let report = switchyard::drill::run(opts).await?;
            println!("{}", report.summary());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Abuse { command } => abuse(command),
        Command::Status { admin, json, fleet } => {
            let path = if fleet {
                "/admin/fleet"
            } else {
                "/admin/routes"
            };
            let v = admin_call(&admin, reqwest::Method::GET, path, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if fleet {
                print_fleet(&v);
            } else {
                print_status(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload {
            allow_removals,
            admin,
        } => {
            let path = if allow_removals {
                "/admin/reload?allow_removals=true"
            } else {
                "/admin/reload"
            };
            let v = admin_call(&admin, reqwest::Method::POST, path, None).await?;
            if v["changed"] == false {
                println!(
                    "unchanged: the routes file is the one in force (version {})",
                    v["version"]
                );
            } else {
                println!("reloaded: the table is now version {}", v["version"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Suspend {
            target,
            reason,
            for_,
            no_wait,
            admin,
        } => {
            if let Some(d) = &for_ {
                let parsed = humantime::parse_duration(d)
                    .with_context(|| format!("--for {d}: not a duration (try 30m, 2h)"))?;
                switchyard::state::check_ttl(parsed).with_context(|| format!("--for {d}"))?;
            }
            let body = serde_json::json!({"reason": reason, "for": for_});
            let path = format!("/admin/targets/{target}/suspend{}", wait_query(no_wait));
            let v = admin_call(&admin, reqwest::Method::POST, &path, Some(body)).await?;
            let until = v["suspension"]["until"]
                .as_u64()
                .map_or("until resumed".to_string(), |u| {
                    format!("until unix time {u}")
                });
            println!(
                "{target} suspended ({until}): traffic moves to the next target of each route"
            );
            warn_unpersisted(&v);
            Ok(fleet_outcome(&v))
        }
        Command::Resume {
            target,
            no_wait,
            admin,
        } => {
            let path = format!("/admin/targets/{target}/resume{}", wait_query(no_wait));
            let v = admin_call(&admin, reqwest::Method::POST, &path, None).await?;
            if v["resumed"] == true {
                println!("{target} resumed");
            } else {
                println!("{target} was not suspended here; nothing changed on this replica");
            }
            warn_unpersisted(&v);
            Ok(fleet_outcome(&v))
        }
    }
}

async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let token = std::env::var("SWITCHYARD_ADMIN_TOKEN").unwrap_or_default();
    if token.is_empty() {
        bail!("SWITCHYARD_ADMIN_TOKEN must be set to serve (the admin plane needs a token)");
    }
    let otel = telemetry::otel::start(&config.telemetry).await?;
    let opts = Options {
        path: Some(path.to_path_buf()),
        env: provider::process_env(),
        listen: config.gateway.listen,
        admin_listen: config.gateway.admin_listen,
        admin_token: token,
    };
    let gateway = app::start(config, opts).await?;
    let live = gateway.live.clone();
    tokio::spawn(reload_on_sighup(live));
    shutdown_signal().await;
    tracing::info!("shutting down; draining requests in flight");
    gateway.shutdown().await;
    if let Some(otel) = otel {
        otel.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo(listen: SocketAddr, admin_listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let sim = Simulator::new();
    let sim_addr = sim
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulator")?;
    let config = switchyard::demo::config(sim_addr).context("the embedded demo table")?;
    let token = std::env::var("SWITCHYARD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let otel = telemetry::otel::start(&config.telemetry).await?;
    let opts = Options {
        path: None,
        env: switchyard::demo::env(),
        listen,
        admin_listen,
        admin_token: token.clone(),
    };
    let gateway = app::start(config, opts).await?;
    let base = format!("http://{}", gateway.addr);
    println!("Switchyard demo: gateway and simulated vendors on loopback.");
    println!();
    println!("  OpenAI base URL:    {base}/v1");
    println!("  Anthropic base URL: {base}");
    println!("  Gemini base URL:    {base}");
    println!("  routes:             claude, gpt, gemini, local, frontier (claude -> gpt -> gemini -> local)");
    println!(
        "  admin:              http://{}  (token: {token})",
        gateway.admin_addr
    );
    println!("  simulator:          http://{sim_addr}");
    println!();
    println!("  curl {base}/v1/chat/completions -H 'Authorization: Bearer demo' -H 'Content-Type: application/json' \\");
    println!("    -d '{{\"model\":\"frontier\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'");
    println!();
    println!("  from openai import OpenAI");
    println!("  client = OpenAI(base_url=\"{base}/v1\", api_key=\"demo\")");
    println!("  print(client.chat.completions.create(model=\"frontier\", messages=[{{\"role\": \"user\", \"content\": \"hello\"}}]).choices[0].message.content)");
    println!();
    println!("Ctrl-C stops it.");
    shutdown_signal().await;
    gateway.shutdown().await;
    if let Some(otel) = otel {
        otel.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchyard demo --replicas N`: a throwaway redis-server, the
/// simulator, and N replicas of the demo table in fleet mode, on the
/// listen and admin ports counting up from the given ones.
async fn demo_fleet(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    replicas: u16,
) -> anyhow::Result<ExitCode> {
    let redis = switchyard::demo::RedisServer::start().await?;
    let sim = Simulator::new();
    let sim_addr = sim
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the simulator")?;
    let token = std::env::var("SWITCHYARD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let port = |addr: SocketAddr, i: u16| -> anyhow::Result<SocketAddr> {
        if addr.port() == 0 {
            return Ok(addr); // each replica gets a free port of its own
        }
        let p = addr
            .port()
            .checked_add(i)
            .context("listen port + replicas is past 65535")?;
        Ok(SocketAddr::new(addr.ip(), p))
    };
    let mut gateways = Vec::new();
    for i in 0..replicas {
        let mut config = switchyard::demo::config(sim_addr).context("the embedded demo table")?;
        config.fleet.redis_url = Some(redis.url());
        config.fleet.replica = Some(format!("demo-{}", i + 1));
        let opts = Options {
            path: None,
            env: switchyard::demo::env(),
            listen: port(listen, i)?,
            admin_listen: port(admin_listen, i)?,
            admin_token: token.clone(),
        };
        gateways.push(app::start(config, opts).await?);
    }
    println!(
        "Switchyard fleet demo: {replicas} replicas, one Redis ({}), simulated vendors on loopback.",
        redis.url()
    );
    println!();
    for (i, g) in gateways.iter().enumerate() {
        println!(
            "  replica demo-{}: http://{}  (OpenAI base URL http://{}/v1)  admin http://{}",
            i + 1,
            g.addr,
            g.addr,
            g.admin_addr
        );
    }
    println!("  simulator:       http://{sim_addr}");
    println!("  admin token:     {token}");
    println!();
    let admin = format!("http://{}", gateways[0].admin_addr);
    println!("  Suspend a target on one replica; every replica applies and acks it:");
    println!("    SWITCHYARD_ADMIN_TOKEN={token} switchyard suspend claude --admin {admin}");
    println!("    SWITCHYARD_ADMIN_TOKEN={token} switchyard status --fleet --admin {admin}");
    println!();
    println!("Ctrl-C stops it.");
    shutdown_signal().await;
    for g in gateways {
        g.shutdown().await;
    }
    redis.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// A new key's record and secret from the `keys create` flags, checked
/// against the routes file (routes exist, the HMAC secret is set).
fn new_key(
    config: &Config,
    name: &str,
    routes: Vec<String>,
    expires: Option<String>,
    rpm: Option<u32>,
    tpm: Option<u32>,
) -> anyhow::Result<(switchyard::keys::KeyRecord, String)> {
    for r in &routes {
        if !config.routes.contains_key(r) {
            bail!(
                "unknown route `{r}` (routes: {})",
                config.routes.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let secret = std::env::var(&config.auth.secret_env)
        .ok()
        .filter(|s| !s.is_empty())
        .with_context(|| {
            format!(
                "set {} to the gateway's HMAC secret",
                config.auth.secret_env
            )
        })?;
    let expires = match expires {
        Some(d) => Some(
            humantime::parse_duration(&d)
                .with_context(|| format!("--expires {d}: not a duration (try 90d)"))?,
        ),
        None => None,
    }
    .map(|d| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |n| n.as_secs())
            + d.as_secs()
    });
    let routes = if routes.is_empty() {
        vec!["*".to_string()]
    } else {
        routes
    };
    Ok(switchyard::keys::create(
        secret.as_bytes(),
        name,
        routes,
        expires,
        rpm,
        tpm,
    ))
}

/// `switchyard keys … --fleet`: the keys in the fleet's Redis, talked to
/// directly (no gateway needs to be up); every replica applies a change
/// from its change stream within a second.
async fn fleet_keys(
    command: KeysCommand,
    config_path: &Path,
    redis_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let url = redis_url
        .filter(|u| !u.is_empty())
        .or_else(|| config.fleet.redis_url.clone())
        .context("--fleet needs --redis-url, $SWITCHYARD_REDIS_URL or [fleet] redis_url")?;
    let name = &config.fleet.name;
    let fleet = switchyard::fleet::FleetKeys::connect(&url, name).await?;
    match command {
        KeysCommand::Create {
            name: key_name,
            routes,
            expires,
            rpm,
            tpm,
        } => {
            let (record, key) = new_key(&config, &key_name, routes, expires, rpm, tpm)?;
            fleet.create(&record).await?;
            println!("{key}");
            eprintln!("key `{key_name}` created in fleet `{name}`; the line above is its secret, shown this once. Every replica accepts it within a second.");
        }
        KeysCommand::List => print_keys(&fleet.list().await?),
        KeysCommand::Revoke { name: key_name } => {
            let file = switchyard::keys::load_file(&config.auth.keys_file).unwrap_or_default();
            fleet.revoke(&key_name, &file).await?;
            println!("key `{key_name}` revoked in fleet `{name}`; every replica refuses it within a second");
        }
        // Subcommands added later (they talk to a gateway, not to Redis).
        #[allow(unreachable_patterns)]
        _ => bail!("--fleet applies to keys create, list and revoke"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_keys(records: &[switchyard::keys::KeyRecord]) {
    println!(
        "{:<20} {:<8} {:<28} {:>8} {:>10} {:>12}",
        "NAME", "STATE", "ROUTES", "RPM", "TPM", "EXPIRES"
    );
    for r in records {
        let state = if r.revoked { "revoked" } else { "active" };
        let limit = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let expires = r
            .expires
            .map_or("never".to_string(), |e| format!("unix {e}"));
        println!(
            "{:<20} {:<8} {:<28} {:>8} {:>10} {:>12}",
            r.name,
            state,
            r.routes.join(","),
            limit(r.rpm),
            limit(r.tpm),
            expires
        );
    }
}

fn keys(command: KeysCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    use switchyard::keys;
    let config = match config::load_file(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let file = &config.auth.keys_file;
    let mut records = keys::load_file(file)?;
    match command {
        KeysCommand::Create {
            name,
            routes,
            expires,
            rpm,
            tpm,
        } => {
            if records.iter().any(|r| r.name == name && !r.revoked) {
                bail!("a key named `{name}` exists; revoke it first or pick another name");
            }
            let (record, key) = new_key(&config, &name, routes, expires, rpm, tpm)?;
            records.push(record);
            keys::save_file(file, records)?;
            println!("{key}");
            eprintln!("key `{name}` created; the line above is its secret, shown this once. Run `switchyard reload` to use it.");
        }
        KeysCommand::List => print_keys(&records),
        KeysCommand::Revoke { name } => {
            let mut found = false;
            for r in records.iter_mut().filter(|r| r.name == name && !r.revoked) {
                r.revoked = true;
                found = true;
            }
            if !found {
                bail!("no active key named `{name}`");
            }
            keys::save_file(file, records)?;
            println!("key `{name}` revoked; run `switchyard reload` to apply it");
        }
        KeysCommand::Unquarantine { .. } => bail!("unquarantine goes through the admin API"),
    }
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path, diff: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in config::warnings(&config) {
        eprintln!("warning: {w}");
    }
    let Some(other) = diff else {
        println!(
            "{}: ok ({} providers, {} targets, {} routes)",
            path.display(),
            config.providers.len(),
            config.targets.len(),
            config.routes.len()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let other_config = match config::load_file(other) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for line in diff_configs(&config, &other_config) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines `+ route x`, `- target y`, `~ route z` from `a` to `b`.
fn diff_configs(a: &Config, b: &Config) -> Vec<String> {
    fn section<T: PartialEq>(
        kind: &str,
        a: &std::collections::BTreeMap<String, T>,
        b: &std::collections::BTreeMap<String, T>,
        out: &mut Vec<String>,
    ) {
        for (name, v) in a {
            match b.get(name) {
                None => out.push(format!("- {kind} {name}")),
                Some(w) if w != v => out.push(format!("~ {kind} {name}")),
                Some(_) => {}
            }
        }
        for name in b.keys().filter(|n| !a.contains_key(*n)) {
            out.push(format!("+ {kind} {name}"));
        }
    }
    let mut out = Vec::new();
    section("provider", &a.providers, &b.providers, &mut out);
    section("target", &a.targets, &b.targets, &mut out);
    section("route", &a.routes, &b.routes, &mut out);
    if out.is_empty() {
        out.push("no route, target or provider changes".into());
    }
    out
}

/// Calls the admin API; turns the usual failures into plain messages.
async fn admin_call(
    args: &AdminArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let token = std::env::var("SWITCHYARD_ADMIN_TOKEN").unwrap_or_default();
    let url = format!("{}{path}", args.admin.trim_end_matches('/'));
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let mut req = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?
        .request(method, &url)
        .bearer_auth(token)
        .header("x-switchyard-actor", format!("cli:{actor}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|_| {
        anyhow::anyhow!(
            "cannot reach the gateway's admin API at {} (is it running? see --admin)",
            args.admin
        )
    })?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    match status.as_u16() {
        200..=299 => Ok(v),
        401 => bail!("the admin API refused the token: set SWITCHYARD_ADMIN_TOKEN to the gateway's admin token"),
        _ => {
            let mut msg = v["error"].as_str().unwrap_or("request failed").to_string();
            if let Some(problems) = v["problems"].as_array() {
                for p in problems {
                    msg.push_str(&format!("\n  {}", p.as_str().unwrap_or_default()));
                }
            }
            bail!("{msg}")
        }
    }
}

/// An ops change the gateway applied but could not write to its state
/// file: it holds, and the operator must know a restart would lose it.
fn warn_unpersisted(v: &serde_json::Value) {
    if let Some(w) = v["warning"].as_str() {
        eprintln!("warning: {w}");
    }
}

fn wait_query(no_wait: bool) -> &'static str {
    if no_wait {
        "?wait=false"
    } else {
        ""
    }
}

/// Prints the fleet line of a fleet change's answer (suspend, resume,
/// unquarantine; fleet mode only):
/// `applied on 3/3 replicas in 41 ms`. Exit 1 when a live replica did not
/// ack in time or Redis could not take the change.
fn fleet_outcome(v: &serde_json::Value) -> ExitCode {
    let f = &v["fleet"];
    if f.is_null() {
        return ExitCode::SUCCESS;
    }
    if let Some(e) = f["error"].as_str() {
        eprintln!("not fleet-wide: {e}");
        return ExitCode::FAILURE;
    }
    if f["waited"] == false {
        println!(
            "sent to the fleet as epoch {}; not waiting for acks",
            f["epoch"]
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "applied on {}/{} replicas in {} ms",
        f["applied"], f["replicas"], f["ms"]
    );
    let missing: Vec<&str> = f["missing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("no ack in time from: {}", missing.join(", "));
        ExitCode::FAILURE
    }
}

/// The fleet view: one line per live replica.
fn print_fleet(v: &serde_json::Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    println!(
        "fleet {} at epoch {} (seen from {})",
        v["name"].as_str().unwrap_or("?"),
        v["epoch"],
        v["replica"].as_str().unwrap_or("?")
    );
    println!();
    println!(
        "{:<24} {:<22} {:<22} {:<8} {:<17} {:>6} {:>10}",
        "REPLICA", "DATA", "ADMIN", "VERSION", "ROUTES", "EPOCH", "HEARTBEAT"
    );
    for r in v["replicas"].as_array().into_iter().flatten() {
        let mut routes = r["routes_hash"].as_str().unwrap_or("?").to_string();
        if r["routes_differ"] == true {
            routes.push_str(" DIFFERS");
        }
        let age = now.saturating_sub(r["heartbeat_ms"].as_u64().unwrap_or(now));
        println!(
            "{:<24} {:<22} {:<22} {:<8} {:<17} {:>6} {:>8}ms ago",
            r["id"].as_str().unwrap_or("?"),
            r["data"].as_str().unwrap_or("?"),
            r["admin"].as_str().unwrap_or("?"),
            r["version"].as_str().unwrap_or("?"),
            routes,
            r["epoch"],
            age
        );
    }
    for r in v["replicas"].as_array().into_iter().flatten() {
        if r["routes_differ"] == true {
            println!(
                "warning: replica {} runs a routes file (hash {}) that differs from the rest",
                r["id"].as_str().unwrap_or("?"),
                r["routes_hash"].as_str().unwrap_or("?")
            );
        }
    }
}

/// The live table as two readable tables: targets, then routes.
fn print_status(v: &serde_json::Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("table version {}", v["version"]);
    if let Some(errors) = v["last_reload_error"].as_array() {
        println!("LAST RELOAD REJECTED (the old table keeps serving):");
        for e in errors {
            println!("  {}", e.as_str().unwrap_or_default());
        }
    }
    println!();
    // REQ/MIN, ERR/MIN, P50 and P99 are over the last complete minute.
    println!(
        "{:<16} {:<10} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>12}  WHY",
        "TARGET", "STATE", "REQ/MIN", "ERR/MIN", "P50", "P99", "REQUESTS", "FAILURES", "SINCE"
    );
    if let Some(targets) = v["targets"].as_object() {
        for (name, t) in targets {
            let since = t["since"].as_u64().map_or("-".to_string(), |s| {
                humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(s)))
                    .to_string()
                    + " ago"
            });
            let m = &t["last_minute"];
            let ms =
                |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |v| format!("{v}ms"));
            println!(
                "{:<16} {:<10} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>12}  {}",
                name,
                t["state"].as_str().unwrap_or("?"),
                m["requests"].as_u64().unwrap_or(0),
                m["errors"].as_u64().unwrap_or(0),
                ms(&m["p50_ms"]),
                ms(&m["p99_ms"]),
                t["requests"].as_u64().unwrap_or(0),
                t["failures"].as_u64().unwrap_or(0),
                since,
                t["reason"]
                    .as_str()
                    .or_else(|| t["why"].as_str())
                    .unwrap_or("")
            );
        }
    }
    println!();
    println!("{:<16} TARGETS (in order)", "ROUTE");
    if let (Some(routes), Some(targets)) = (v["routes"].as_object(), v["targets"].as_object()) {
        for (name, r) in routes {
            let chain: Vec<String> = r["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .map(|t| format!("{t} ({})", targets[t]["state"].as_str().unwrap_or("?")))
                .collect();
            println!("{:<16} {}", name, chain.join(" -> "));
        }
    }
}

async fn reload_on_sighup(live: std::sync::Arc<switchyard::state::Live>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match switchyard::reload::reload(live.clone(), "sighup".into()).await {
                Ok(v) => tracing::info!(version = v, "routes reloaded on SIGHUP"),
                Err(e) => {
                    tracing::warn!(error = %e, "reload rejected; the old table keeps serving")
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn abuse(command: AbuseCommand) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, BufReader, BufWriter, Write};
    use switchyard::abuse;
    match command {
        AbuseCommand::Scan { file, out } => {
            let input: Box<dyn BufRead> = if file == Path::new("-") {
                Box::new(BufReader::new(std::io::stdin().lock()))
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            };
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(BufWriter::new(std::io::stdout().lock())),
            };
            let summary = abuse::scan::scan(input, abuse::Settings::default(), |flag| {
                serde_json::to_writer(&mut sink, flag)?;
                sink.write_all(b"\n")
            })
            .with_context(|| format!("scanning {}", file.display()))?;
            sink.flush().context("writing flags")?;
            eprintln!(
                "scanned {} lines, flagged {} keys",
                summary.lines, summary.keys_flagged
            );
            Ok(ExitCode::SUCCESS)
        }
        AbuseCommand::Generate {
            seed,
            hours,
            out,
            labels,
        } => {
            if !(hours > 0.0 && hours <= 24.0 * 14.0) {
                bail!("--hours {hours}: give a duration between 0 and 336 hours");
            }
            let traffic = abuse::synth::generate(seed, hours);
            std::fs::write(&out, traffic.log_jsonl())
                .with_context(|| format!("writing {}", out.display()))?;
            if let Some(l) = &labels {
                std::fs::write(l, traffic.labels_jsonl())
                    .with_context(|| format!("writing {}", l.display()))?;
            }
            eprintln!(
                "wrote {} requests from {} keys to {}",
                traffic.events.len(),
                traffic.labels.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
