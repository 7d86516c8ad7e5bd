#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use rootwatch::cli::{Cli, Command, LogFormat, RulesCommand, exit};
use rootwatch::config::{self, RawConfig};
use rootwatch::detect::Detector;
use rootwatch::replay::Replay;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logs(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("rootwatch: --log-level: {e}");
        return ExitCode::from(exit::USAGE as u8);
    }
    let code = match cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "rootwatch", &mut io::stdout());
            0
        }
        Command::CheckConfig { path, config } => {
            let config = path.or(config).expect("clap requires a config file");
            check_config(&config)
        }
        Command::Replay {
            config,
            format,
            jobs,
            paths,
        } => {
            let loaded = match &config {
                Some(path) => config::load(path).map(|(_, s)| s),
                None => config::validate(&RawConfig::default()),
            };
            match loaded {
                Ok(settings) => replay(settings, format.into(), jobs, &paths),
                Err(e) => config_error(config.as_deref().unwrap_or("(defaults)".as_ref()), &e),
            }
        }
        Command::Rules {
            command: RulesCommand::List { config },
        } => {
            let loaded = match &config {
                Some(path) => config::load(path).map(|(_, s)| s),
                None => config::validate(&RawConfig::default()),
            };
            match loaded {
                Ok(settings) => {
                    print!("{}", rootwatch::rules_cmd::list(&settings.detect));
                    0
                }
                Err(e) => config_error(config.as_deref().unwrap_or("(defaults)".as_ref()), &e),
            }
        }
        Command::Rules {
            command:
                RulesCommand::Test {
                    config,
                    rules,
                    events,
                },
        } => {
            let base = match &config {
                Some(path) => match config::load(path) {
                    Ok((raw, settings)) => Some(rootwatch::rules_cmd::TestBase {
                        detect: settings.detect,
                        skip_other_logsources: raw.detect.sigma.skip_other_logsources,
                    }),
                    Err(e) => return ExitCode::from(config_error(path, &e) as u8),
                },
                None => None,
            };
            rules_test(&rules, &events, base)
        }
        Command::Audit {
            config,
            format,
            offline,
        } => {
            let settings = match &config {
                Some(path) => match config::load(path) {
                    Ok((_, settings)) => Some(settings),
                    Err(e) => return ExitCode::from(config_error(path, &e) as u8),
                },
                None => None,
            };
            match offline.report.clone() {
                Some(report) => audit_offline(settings, format, offline, report),
                None => audit(
                    settings.expect("clap requires --config without --report"),
                    format,
                ),
            }
        }
        Command::Healthcheck {
            url,
            config,
            allow_degraded,
        } => healthcheck(url, config.as_deref(), allow_degraded),
        Command::TestAlert {
            config,
            sinks,
            severity,
            respect_routing,
        } => match config::load(&config) {
            Ok((_, settings)) => test_alert(
                &settings,
                rootwatch::test_alert::Selection {
                    names: sinks,
                    respect_routing,
                },
                severity,
            ),
            Err(e) => config_error(&config, &e),
        },
        Command::Run { config } => match config::load(&config) {
            Ok((_, settings)) => run(settings, config),
            Err(e) => config_error(&config, &e),
        },
    };
    ExitCode::from(code as u8)
}

fn config_error(path: &std::path::Path, e: &config::ConfigError) -> i32 {
    eprintln!("rootwatch: config error in {}: {e}", path.display());
    exit::CONFIG
}

fn healthcheck(url: Option<String>, config: Option<&std::path::Path>, allow_degraded: bool) -> i32 {
    use rootwatch::healthcheck;
    let url = match (url, config) {
        (Some(url), _) => url,
        (None, None) => healthcheck::DEFAULT_URL.to_owned(),
        (None, Some(path)) => match config::load(path) {
            Ok((_, settings)) => match settings.server_listen {
                Some(listen) => healthcheck::readyz_url(listen),
                None => {
                    eprintln!(
                        "rootwatch: config error in {}: server.listen is empty, so there is no /readyz to check",
                        path.display()
                    );
                    return exit::CONFIG;
                }
            },
            Err(e) => return config_error(path, &e),
        },
    };
    match healthcheck::check(&url, healthcheck::TIMEOUT, allow_degraded) {
        Ok(healthcheck::Healthy::Ready) => 0,
        Ok(healthcheck::Healthy::Degraded(problems)) => {
            eprintln!("rootwatch: healthcheck: {url} is degraded (passing with --allow-degraded)");
            for problem in problems {
                eprintln!("rootwatch: healthcheck: {problem}");
            }
            0
        }
        Err(e) => {
            // The innermost cause ("connection refused", "timed out") is what
            // an operator reading the task's health output needs.
            let mut line = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                line.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("rootwatch: healthcheck failed: {line}");
            exit::UNAVAILABLE
        }
    }
}

fn replay(
    settings: config::Settings,
    format: rootwatch::sink::format::PayloadFormat,
    jobs: Option<std::num::NonZeroUsize>,
    paths: &[std::path::PathBuf],
) -> i32 {
    let detector = Detector::new(settings.detect);
    let jobs = jobs
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, |n| n.get());
    let mut replay = Replay::new(&detector, settings.dedup_capacity)
        .with_format(format)
        .with_jobs(jobs);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let stderr = io::stderr();
    let mut err = stderr.lock();
    let result = replay
        .run(paths, &mut out, &mut err)
        .and_then(|_| out.flush());
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return 0;
        }
        let _ = writeln!(err, "rootwatch: replay failed: {e}");
        return exit::SOFTWARE;
    }
    let summary = replay.finish();
    let _ = summary.write_to(&mut err);
    if summary.had_errors() {
        exit::DATA_ERR
    } else {
        0
    }
}

fn audit_offline(
    settings: Option<config::Settings>,
    format: rootwatch::audit::output::AuditFormat,
    args: rootwatch::cli::OfflineArgs,
    report: std::path::PathBuf,
) -> i32 {
    use rootwatch::audit::{offline, runner::AccountResult};
    let thresholds = settings
        .as_ref()
        .map(|s| s.audit.thresholds)
        .unwrap_or_default();
    let input = offline::OfflineInput {
        report,
        account_summary: args.account_summary,
        virtual_mfa: args.virtual_mfa,
        password_policy: args.password_policy,
        organizations_features: args.organizations_features,
        member_account: args.member_account,
        generated: args.generated,
        account_id: args.account_id,
    };
    let inv = match offline::inventory(&input) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("rootwatch: audit: {e}");
            return exit::DATA_ERR;
        }
    };
    let now = args.now.unwrap_or_else(chrono::Utc::now);
    let mut e = rootwatch::audit::evaluate(&inv, &thresholds, now);
    if let Some(s) = &settings {
        for f in &mut e.findings {
            s.detect.enrichment.apply(f, now);
        }
    }
    let results = [AccountResult {
        name: e.account_id.clone(),
        result: Ok(e),
    }];
    write_audit(&results, format, now)
}

fn write_audit(
    results: &[rootwatch::audit::runner::AccountResult],
    format: rootwatch::audit::output::AuditFormat,
    now: chrono::DateTime<chrono::Utc>,
) -> i32 {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let stderr = io::stderr();
    let mut err = stderr.lock();
    match rootwatch::audit::output::write_results(results, format, now, &mut out, &mut err)
        .and_then(|ok| out.flush().map(|_| ok))
    {
        Ok(true) => 0,
        Ok(false) => exit::UNAVAILABLE,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = writeln!(err, "rootwatch: audit failed: {e}");
            exit::SOFTWARE
        }
    }
}

fn rules_test(
    rules: &std::path::Path,
    events: &[std::path::PathBuf],
    base: Option<rootwatch::rules_cmd::TestBase>,
) -> i32 {
    match rootwatch::rules_cmd::test(rules, events, base) {
        Ok(report) => {
            print!("{}", report.text);
            i32::from(!report.passed)
        }
        Err(e) => {
            eprintln!("rootwatch: {e}");
            exit::CONFIG
        }
    }
}

fn audit(settings: config::Settings, format: rootwatch::audit::output::AuditFormat) -> i32 {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let results = runtime.block_on(async {
        let aws = rootwatch::aws::load_defaults().await;
        rootwatch::audit::runner::audit_all(&settings.audit, &aws, chrono::Utc::now).await
    });
    let now = chrono::Utc::now();
    let mut results = results;
    for r in &mut results {
        if let Ok(e) = &mut r.result {
            for f in &mut e.findings {
                settings.detect.enrichment.apply(f, now);
            }
        }
    }
    write_audit(&results, format, now)
}

fn test_alert(
    settings: &config::Settings,
    selection: rootwatch::test_alert::Selection,
    severity: rootwatch::finding::Severity,
) -> i32 {
    use rootwatch::test_alert;
    let sinks = match test_alert::select(&settings.sinks, &selection) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rootwatch: test-alert: {e}");
            return exit::CONFIG;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let finding = test_alert::finding(severity, chrono::Utc::now(), rand::random());
    let outcomes = runtime.block_on(test_alert::run(&sinks, &finding, selection.respect_routing));
    let mut out = io::stdout().lock();
    for (sink, outcome) in sinks.iter().zip(&outcomes) {
        let _ = writeln!(out, "{} ({}): {outcome}", sink.name, sink.kind.type_name());
    }
    let _ = out.flush();
    if test_alert::all_delivered(&outcomes) {
        0
    } else if outcomes.iter().all(|o| *o == test_alert::Outcome::Skipped) {
        eprintln!(
            "rootwatch: test-alert: no chosen sink takes a {severity} `{}` finding under its routing",
            test_alert::RULE
        );
        exit::CONFIG
    } else {
        exit::UNAVAILABLE
    }
}

/// The multi-threaded runtime `run` and `audit` use; a failure to build it
/// is reported and mapped to its exit code.
fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("rootwatch: cannot start the runtime: {e}");
            exit::SOFTWARE
        })
}

/// Logging for every subcommand: `--log-level` (else RUST_LOG, else info),
/// JSON for log collectors and readable lines when a person watches.
fn init_logs(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("`{l}`: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !io::stderr().is_terminal(),
    };
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
    Ok(())
}

fn check_config(config: &std::path::Path) -> i32 {
    match config::load(config) {
        Ok((raw, settings)) => {
            print!("{}", config::render_effective(&raw));
            match settings.detect.sigma.as_deref() {
                Some(s) => eprintln!(
                    "{}: OK ({} Sigma rules, {} passed over for another log source)",
                    config.display(),
                    s.len(),
                    s.skipped.len()
                ),
                None => eprintln!("{}: OK", config.display()),
            }
            0
        }
        Err(e) => config_error(config, &e),
    }
}

fn run(settings: config::Settings, path: std::path::PathBuf) -> i32 {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = rootwatch::app::Options {
        config_path: Some(path),
        ..Default::default()
    };
    match runtime.block_on(rootwatch::app::run_with(
        settings,
        opts,
        rootwatch::shutdown::signal(),
    )) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "rootwatch cannot run");
            eprintln!("rootwatch: {e}");
            match e {
                rootwatch::app::RunError::NoSources
                | rootwatch::app::RunError::NoSinks
                | rootwatch::app::RunError::Checkpoint(_) => exit::CONFIG,
                rootwatch::app::RunError::TaskFailed { .. } => exit::SOFTWARE,
                _ => exit::UNAVAILABLE,
            }
        }
    }
}
