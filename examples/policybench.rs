//! Policy benchmark: (a) what choosing targets costs per request
//! (`Route::plan` on a 4-target route; whether a target may take traffic now
//! is asked by the failover loop per attempt, not timed here), and (b) what
//! compiling and swapping in a 1,000-route table costs on reload
//! (`config::load_str`, `policy::Table::compile`, `state::Live::apply`).
//!
//! Run with:
//!     cargo run --release --example policybench
//!     cargo run --example policybench -- --quick    (a smoke run, as CI does)
//!
//! Expected output (figures vary by machine and load; each is the median
//! of timed runs; PASS/MISS compares with the target, nothing fails):
//!     (a) Route::plan, 4 targets, target ≤ 1 µs
//!       typical chat (6 messages, 1 tool)            158 ns  PASS
//!
//!     (b) 1 provider, 50 targets, 1000 routes × 3 targets (55 KB of TOML)
//!       config::load_str (parse + validate)       14.615 ms
//!       policy::Table::compile                     0.664 ms
//!       Live::apply (snapshot + ArcSwap store)     0.938 ms  (builds the snapshot; ...)
//!       total (load_str + compile + apply)        16.216 ms  target ≤ 10 ms  MISS
//!       compile + swap alone (compile + apply)     1.602 ms  target ≤ 10 ms  PASS

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchyard::config;
use switchyard::model::{ChatRequest, Message, Part, Role, ToolDef};
use switchyard::policy::Table;
use switchyard::provider::process_env;
use switchyard::state::Live;

const ROUTES: usize = 1000;
const TARGETS: usize = 50;

/// Warm-up ms, ms per timed run, and timed runs; the iterations per run are
/// calibrated from the warm-up.
struct Budget(u64, u64, usize);

/// Median over `runs` timed runs of the ns per call of `op`; each run is
/// at least one call, so slow operations are timed call by call.
fn median_ns(budget: &Budget, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let Budget(warmup_ms, run_ms, runs) = *budget;
    while n < 2 || start.elapsed() < Duration::from_millis(warmup_ms) {
        op();
        n += 1;
    }
    let per_op = start.elapsed().as_nanos() as f64 / n as f64;
    let iters = ((run_ms as f64 * 1e6 / per_op) as u64).max(1);
    // Recorded in tenths of a nanosecond, 3 significant figures.
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..iters {
            op();
        }
        let tenth_ns = t.elapsed().as_nanos() * 10 / u128::from(iters);
        hist.record(u64::try_from(tenth_ns).unwrap_or(u64::MAX).max(1))
            .expect("record");
    }
    hist.value_at_quantile(0.5) as f64 / 10.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// A chat with a system prompt, six messages and one tool: what an app sends.
fn typical_request() -> ChatRequest {
    let turn = |role, text: &str| Message {
        role,
        content: vec![Part::Text(text.repeat(3))],
    };
    ChatRequest {
        model: "frontier".into(),
        system: Some("You are a concise, careful assistant. ".repeat(4)),
        messages: vec![
            turn(Role::User, "What should I pack for three days in Lisbon? "),
            turn(
                Role::Assistant,
                "A light jacket, comfortable shoes, an umbrella. ",
            ),
            turn(Role::User, "Is it usually rainy there in early spring? "),
            turn(
                Role::Assistant,
                "Showers come and go with Atlantic fronts. ",
            ),
            turn(Role::User, "Then check Tuesday's forecast for me, please. "),
            turn(
                Role::Assistant,
                "Let me look that up with the weather tool. ",
            ),
        ],
        tools: vec![ToolDef {
            name: "get_weather".into(),
            description: Some("Forecast for a city and date.".into()),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        max_tokens: Some(1024),
        ..ChatRequest::default()
    }
}

/// The 4-target route of the demo table, compiled from its TOML so the
/// benchmark does not depend on `Route`'s fields.
const FRONTIER: &str = r#"
[auth]
mode = "any_key"

[providers.local]
kind = "openai_compatible"
base_url = "http://127.0.0.1:1/v1"

[targets.claude]
provider = "local"
model = "claude-sonnet-4-5"
context_window = 200000

[targets.gpt]
provider = "local"
model = "gpt-5"

[targets.gemini]
provider = "local"
model = "gemini-2.5-pro"
context_window = 1000000

[targets.local]
provider = "local"
model = "qwen3-32b"
context_window = 32768
images = false

[routes.frontier]
targets = ["claude", "gpt", "gemini", "local"]
"#;

fn bench_plan(budget: &Budget) {
    let cfg = config::load_str("frontier.toml", FRONTIER, Vec::new()).expect("valid table");
    let table = Table::compile(&cfg);
    let route = &table.routes["frontier"];
    let req = typical_request();
    let plan = route.plan(&req).expect("plan");
    assert_eq!(plan.targets.len(), 4);
    let ns = median_ns(budget, || {
        black_box(route.plan(black_box(&req)).expect("plan"));
    });
    println!("(a) Route::plan, 4 targets, target ≤ 1 µs");
    println!(
        "  {:<40} {ns:>7.0} ns  {}\n",
        "typical chat (6 messages, 1 tool)",
        verdict(ns <= 1_000.0)
    );
}

/// A routes file: one local provider, `TARGETS` targets, `ROUTES` routes of
/// three targets each.
fn routes_toml() -> String {
    let mut s = String::from("[auth]\nmode = \"any_key\"\n\n");
    s.push_str("[providers.local]\nkind = \"openai_compatible\"\n");
    s.push_str("base_url = \"http://127.0.0.1:1/v1\"\n\n");
    for t in 0..TARGETS {
        let _ = writeln!(
            s,
            "[targets.t{t:02}]\nprovider = \"local\"\nmodel = \"model-{t:02}\"\ncontext_window = {}\n",
            32_768 * (1 + t % 4)
        );
    }
    for r in 0..ROUTES {
        let (a, b, c) = (r % TARGETS, (r + 1) % TARGETS, (r + 7) % TARGETS);
        let _ = writeln!(
            s,
            "[routes.route-{r:04}]\ntargets = [\"t{a:02}\", \"t{b:02}\", \"t{c:02}\"]\n"
        );
    }
    s
}

fn bench_reload(budget: &Budget) {
    let text = routes_toml();
    let load = || config::load_str("routes.toml", &text, Vec::new()).expect("valid routes file");
    let cfg = load();
    assert_eq!(cfg.routes.len(), ROUTES);
    // `Live::new` must run inside a tokio runtime (its health clock and
    // event log); nothing here awaits.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _runtime = rt.enter();
    let live = Live::new(cfg.clone(), None, process_env()).expect("live state");
    println!(
        "(b) 1 provider, {TARGETS} targets, {ROUTES} routes × 3 targets ({} KB of TOML)",
        text.len() / 1024
    );
    let load_ns = median_ns(budget, || {
        black_box(load());
    });
    let compile_ns = median_ns(budget, || {
        black_box(Table::compile(black_box(&cfg)));
    });
    // `apply` consumes its config; the clone is timed apart and subtracted.
    let clone_ns = median_ns(budget, || {
        black_box(cfg.clone());
    });
    let apply_ns = median_ns(budget, || {
        black_box(live.apply(cfg.clone()).expect("apply"));
    }) - clone_ns;
    assert_eq!(live.load().table.routes.len(), ROUTES);
    let ms = |ns: f64| ns / 1e6;
    println!(
        "  {:<40} {:>7.3} ms",
        "config::load_str (parse + validate)",
        ms(load_ns)
    );
    println!(
        "  {:<40} {:>7.3} ms",
        "policy::Table::compile",
        ms(compile_ns)
    );
    println!(
        "  {:<40} {:>7.3} ms  (builds the snapshot; compiles the table too)",
        "Live::apply (snapshot + ArcSwap store)",
        ms(apply_ns)
    );
    let total = load_ns + compile_ns + apply_ns;
    let swap = compile_ns + apply_ns;
    for (label, ns) in [
        ("total (load_str + compile + apply)", total),
        ("compile + swap alone (compile + apply)", swap),
    ] {
        let ok = verdict(ns <= 10e6);
        println!("  {label:<40} {:>7.3} ms  target ≤ 10 ms  {ok}", ms(ns));
    }
}

fn main() {
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => {
            eprintln!("unknown argument {other} (expected --quick)");
            std::process::exit(2);
        }
    };
    let (plan_budget, reload_budget) = if quick {
        (Budget(5, 5, 3), Budget(5, 5, 3))
    } else {
        (Budget(200, 20, 21), Budget(200, 50, 15))
    };
    bench_plan(&plan_budget);
    bench_reload(&reload_budget);
}
