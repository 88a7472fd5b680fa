//! Abuse detection against labelled synthetic traffic (issue 16 targets):
//! on seeds that were not used for tuning, recall of campaign keys ≥ 0.9,
//! each flagged within 60 s of its 20th request, ≤ 1% of genuine keys
//! flagged, every flag explained, and no flag that depends on the future.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use switchyard::abuse::scan::scan_str;
use switchyard::abuse::synth::{self, Traffic};
use switchyard::abuse::{Flag, Settings};

/// Seeds held out from tuning (tuning used 101–106, and 7001 once to diagnose a miss).
const HELD_OUT: [u64; 2] = [7_101, 7_102];
/// Simulated hours per seed: long enough for the low-and-slow keys to make
/// 20 requests, short enough for a debug build.
const HOURS: f64 = 3.0;

/// Families that each look like a campaign in one way and must not be flagged.
const TRAPS: [&str; 7] = [
    "launch_spike",
    "batch_summarise",
    "batch_classify",
    "eval_sweep",
    "translation_pipeline",
    "rag_support_bot",
    "coding_agent",
];

struct Outcome {
    recall: f64,
    false_flag_rate: f64,
    by_family: HashMap<&'static str, (usize, usize)>,
}

fn evaluate(traffic: &Traffic, flags: &[Flag]) -> Outcome {
    let mut times: HashMap<&str, Vec<f64>> = HashMap::new();
    for e in &traffic.events {
        times.entry(e.key.as_str()).or_default().push(e.ts);
    }
    let flagged: HashMap<&str, &Flag> = flags.iter().map(|f| (f.key.as_str(), f)).collect();
    assert_eq!(flagged.len(), flags.len(), "at most one flag per key");
    let mut by_family: HashMap<&'static str, (usize, usize)> = HashMap::new();
    let (mut campaign, mut caught, mut genuine, mut false_flags) = (0, 0, 0, 0);
    for label in &traffic.labels {
        let Some(ts) = times.get(label.key.as_str()) else {
            continue;
        };
        let entry = by_family.entry(label.family).or_default();
        entry.0 += 1;
        let flag = flagged.get(label.key.as_str());
        if flag.is_some() {
            entry.1 += 1;
        }
        if label.campaign {
            campaign += 1;
            if let Some(f) = flag {
                let deadline = ts.get(19).unwrap_or(ts.last().unwrap()) + 60.0;
                assert!(
                    f.flagged_at <= deadline,
                    "{} ({}) flagged at {} after its deadline {deadline}",
                    f.key,
                    label.family,
                    f.flagged_at
                );
                caught += 1;
            }
        } else {
            genuine += 1;
            if let Some(f) = flag {
                false_flags += 1;
                eprintln!(
                    "false flag on {} ({}): {:?}",
                    f.key, label.family, f.reasons
                );
            }
        }
    }
    for f in flags {
        assert!(!f.reasons.is_empty(), "a flag without reasons: {f:?}");
        assert!((0.0..=1.0).contains(&f.score), "{f:?}");
        assert!(f.reasons.iter().all(|r| !r.is_empty()));
    }
    Outcome {
        recall: caught as f64 / campaign.max(1) as f64,
        false_flag_rate: false_flags as f64 / genuine.max(1) as f64,
        by_family,
    }
}

#[test]
fn held_out_seeds_meet_the_targets() {
    for seed in HELD_OUT {
        let traffic = synth::generate(seed, HOURS);
        let flags = scan_str(&traffic.log_jsonl(), Settings::default()).unwrap();
        let out = evaluate(&traffic, &flags);
        let mut families: Vec<_> = out.by_family.iter().collect();
        families.sort();
        eprintln!(
            "seed {seed}: recall {:.3}, false flags {:.4}; (keys, flagged) per family: {families:?}",
            out.recall, out.false_flag_rate
        );
        assert!(out.recall >= 0.9, "seed {seed}: recall {}", out.recall);
        assert!(
            out.false_flag_rate <= 0.01,
            "seed {seed}: false-flag rate {}",
            out.false_flag_rate
        );
        for fam in TRAPS {
            let (keys, flagged) = out.by_family.get(fam).copied().unwrap_or_default();
            assert!(keys > 0, "seed {seed}: the generator made no {fam} keys");
            assert_eq!(flagged, 0, "seed {seed}: {fam} flagged");
        }
        for fam in [
            "distillation_heavy",
            "hydra_farm",
            "reward_model_grading",
            "reasoning_extraction",
            "low_and_slow",
        ] {
            let (keys, flagged) = out.by_family.get(fam).copied().unwrap_or_default();
            assert!(flagged > 0, "seed {seed}: no {fam} key of {keys} flagged");
        }
        assert!(
            flags
                .iter()
                .any(|f| f.kind == "key_farm" && f.cluster.is_some()),
            "seed {seed}: the hydra farm was not seen as a cluster"
        );
    }
}

#[test]
fn a_flag_depends_only_on_what_came_before_it() {
    let traffic = synth::generate(HELD_OUT[0], 2.0);
    let log = traffic.log_jsonl();
    let flags = scan_str(&log, Settings::default()).unwrap();
    assert!(flags.len() >= 3, "too few flags to test: {}", flags.len());
    let lines: Vec<&str> = log.lines().collect();
    for flag in [&flags[0], &flags[flags.len() / 2], &flags[flags.len() - 1]] {
        // Cut the log right after the request that decided the flag.
        let decided = traffic
            .events
            .iter()
            .position(|e| e.key == flag.key && e.ts == flag.flagged_at)
            .unwrap();
        let prefix = lines[..=decided].join("\n");
        let again = scan_str(&prefix, Settings::default()).unwrap();
        assert_eq!(again.last(), Some(flag), "truncated after {}", flag.key);
    }
}

#[test]
fn state_stays_within_its_bounds() {
    let settings = Settings {
        max_keys: 100,
        max_groups: 150,
        ..Settings::default()
    };
    let traffic = synth::generate(HELD_OUT[1], 2.0);
    let mut det = switchyard::abuse::Detector::new(settings);
    let mut scratch = Vec::new();
    let mut seen = HashSet::new();
    for e in &traffic.events {
        let line: switchyard::abuse::LogLine =
            serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        det.observe(&switchyard::abuse::Record::from_line(&line, &mut scratch));
        seen.insert(e.key.clone());
        assert!(det.tracked_keys() <= 100);
        assert!(det.tracked_groups() <= 150);
    }
    assert!(seen.len() > 100, "the test must overflow the bound");
}

#[test]
fn the_scan_command_prints_flags_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    let labels = dir.path().join("labels.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "abuse", "generate", "--seed", "7003", "--hours", "1", "--out",
        ])
        .arg(&log)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let campaign: HashSet<String> = std::fs::read_to_string(&labels)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["campaign"] == true)
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["abuse", "scan"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flags: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!flags.is_empty());
    for f in &flags {
        for field in ["key", "flagged_at", "kind", "score", "cluster", "reasons"] {
            assert!(f.get(field).is_some(), "{field} missing in {f}");
        }
        assert!(campaign.contains(f["key"].as_str().unwrap()), "{f}");
    }

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"ts\": 1, \"key\": \"a\"}\nnot json\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["abuse", "scan"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn a_key_farm_cluster_names_its_campaign_keys() {
    use switchyard::abuse::{Detector, LogLine, Record};
    let traffic = synth::generate(HELD_OUT[0], 2.0);
    let campaign: HashSet<&str> = traffic
        .labels
        .iter()
        .filter(|l| l.campaign)
        .map(|l| l.key.as_str())
        .collect();
    let mut det = Detector::new(Settings::default());
    let mut scratch = Vec::new();
    let log = traffic.log_jsonl();
    for line in log.lines() {
        let parsed: LogLine = serde_json::from_str(line).unwrap();
        let Some(flag) = det.observe(&Record::from_line(&parsed, &mut scratch)) else {
            continue;
        };
        let Some(cluster) = &flag.cluster else {
            continue;
        };
        // What `scope = "cluster"` quarantines: the flagged key and the
        // siblings counted as the same campaign, never a genuine key.
        let keys = det.cluster_keys(cluster);
        assert!(keys.contains(&flag.key), "{keys:?} lacks {}", flag.key);
        assert!(keys.len() >= 4, "a farm of {keys:?}");
        for k in &keys {
            assert!(
                campaign.contains(k.as_str()),
                "genuine key {k} in {cluster}"
            );
        }
        assert!(det.cluster_keys("c-000000000000").is_empty());
        return;
    }
    panic!("no key farm flagged");
}
