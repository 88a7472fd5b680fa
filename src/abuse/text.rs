//! What a prompt asks for, without keeping the prompt: one pass over its
//! words yields capability-area tags, whether it elicits a reasoning trace,
//! whether it is a grading rubric, whether it asks for a terse answer, and
//! hashes of its template skeleton (digits, quoted strings and names
//! replaced) so that "one template, different slot fills" is visible.
//!
//! Lexicons are looked up per word, word pair and word triple in one hash
//! map, so the cost is linear in the text and independent of lexicon size.

use std::collections::HashMap;
use std::sync::LazyLock;

/// Capability areas a sweep walks through; bit `i` of [`Features::areas`].
pub const AREAS: [&str; 20] = [
    "math",
    "coding",
    "agentic tool use",
    "data analysis",
    "physics",
    "chemistry",
    "biology",
    "logic puzzles",
    "creative writing",
    "law",
    "medicine",
    "finance",
    "history",
    "languages",
    "ethics",
    "summarisation",
    "planning",
    "philosophy",
    "databases",
    "security",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    Area(u8),
    /// A phrase that on its own asks for the full reasoning trace.
    Reasoning,
    /// Asks for an explanation; two of them count as one `Reasoning`.
    ReasoningWeak,
    Rubric,
    Terse,
}

const AREA_WORDS: [&[&str]; 20] = [
    &[
        "equation",
        "integral",
        "derivative",
        "theorem",
        "prove",
        "proof",
        "algebra",
        "geometry",
        "probability",
        "calculus",
        "matrix",
        "polynomial",
        "solve for",
        "arithmetic",
        "fraction",
        "prime",
        "lemma",
        "eigenvalue",
        "eigenvalues",
        "combinatorics",
        "triangle",
        "integer",
        "integers",
        "modulo",
        "inequality",
        "logarithm",
        "sequence",
        "series converge",
        "vector",
        "vectors",
        "limit of",
        "real numbers",
        "math",
        "mathematics",
        "sum of",
        "expected value",
        "number theory",
        "divisible",
        "quadratic",
        "trigonometry",
        "permutations",
    ],
    &[
        "python",
        "javascript",
        "typescript",
        "rust",
        "golang",
        "java",
        "code",
        "function",
        "algorithm",
        "bug",
        "compile",
        "compiler",
        "recursion",
        "recursive",
        "implement",
        "refactor",
        "linked list",
        "binary tree",
        "hash map",
        "big o",
        "time complexity",
        "unit test",
        "regex",
        "c++",
        "program",
        "programming",
        "debug",
        "stack trace",
        "class",
        "dynamic programming",
        "api",
        "async",
    ],
    &[
        "tool",
        "tools",
        "agent",
        "agents",
        "tool call",
        "function calling",
        "call the",
        "json schema",
        "workflow",
        "multi step",
        "browse",
        "web search",
        "execute",
        "actions",
        "api call",
        "orchestrate",
        "subtasks",
        "react agent",
        "scratchpad",
        "observation",
    ],
    &[
        "dataset",
        "csv",
        "regression",
        "correlation",
        "statistics",
        "statistical",
        "median",
        "variance",
        "standard deviation",
        "pandas",
        "chart",
        "hypothesis",
        "sample size",
        "spreadsheet",
        "outliers",
        "p value",
        "confidence interval",
        "data analysis",
        "time series",
        "anova",
        "mean and",
    ],
    &[
        "physics",
        "velocity",
        "acceleration",
        "force",
        "momentum",
        "quantum",
        "thermodynamics",
        "entropy",
        "friction",
        "gravity",
        "gravitational",
        "electric field",
        "circuit",
        "voltage",
        "projectile",
        "relativity",
        "kinetic energy",
        "wavelength",
        "orbit",
    ],
    &[
        "chemistry",
        "molecule",
        "molecules",
        "reaction",
        "compound",
        "oxidation",
        "acid",
        "molar",
        "stoichiometry",
        "chemical",
        "bond",
        "electrons",
        "ph",
        "catalyst",
        "titration",
        "organic",
        "isomer",
    ],
    &[
        "biology",
        "cell",
        "cells",
        "dna",
        "rna",
        "protein",
        "enzyme",
        "gene",
        "genes",
        "evolution",
        "photosynthesis",
        "mitosis",
        "organism",
        "species",
        "ecosystem",
        "neuron",
        "immune",
    ],
    &[
        "puzzle",
        "riddle",
        "logic",
        "logical",
        "deduce",
        "deduction",
        "syllogism",
        "paradox",
        "sudoku",
        "knights and knaves",
        "truth teller",
        "liar",
        "brain teaser",
        "lateral thinking",
    ],
    &[
        "poem",
        "story",
        "short story",
        "haiku",
        "sonnet",
        "lyrics",
        "narrative",
        "fiction",
        "character",
        "screenplay",
        "limerick",
        "creative",
        "plot",
        "metaphor",
    ],
    &[
        "legal",
        "law",
        "contract",
        "liability",
        "statute",
        "court",
        "lawsuit",
        "tort",
        "jurisdiction",
        "plaintiff",
        "defendant",
        "constitutional",
        "precedent",
        "negligence",
        "copyright",
    ],
    &[
        "symptoms",
        "diagnosis",
        "patient",
        "treatment",
        "dosage",
        "clinical",
        "disease",
        "medication",
        "medical",
        "diagnose",
        "prognosis",
        "syndrome",
        "therapy",
        "chronic",
    ],
    &[
        "stock",
        "stocks",
        "portfolio",
        "interest rate",
        "compound interest",
        "inflation",
        "investment",
        "loan",
        "economics",
        "economic",
        "gdp",
        "revenue",
        "finance",
        "financial",
        "valuation",
        "bond yield",
        "cash flow",
        "monetary",
        "tariff",
    ],
    &[
        "history",
        "historical",
        "century",
        "empire",
        "revolution",
        "ancient",
        "civilization",
        "medieval",
        "world war",
        "dynasty",
        "colonial",
        "treaty",
    ],
    &[
        "translate",
        "translation",
        "grammar",
        "french",
        "spanish",
        "german",
        "japanese",
        "chinese",
        "linguistics",
        "idiom",
        "etymology",
        "portuguese",
        "italian",
    ],
    &[
        "ethical",
        "ethics",
        "moral",
        "morally",
        "dilemma",
        "trolley problem",
        "fairness",
        "utilitarian",
        "deontological",
    ],
    &[
        "summarize",
        "summarise",
        "summary",
        "tl dr",
        "key points",
        "main points",
        "condense",
        "abstract",
    ],
    &[
        "strategy",
        "itinerary",
        "schedule",
        "roadmap",
        "optimize",
        "trade off",
        "tradeoffs",
        "prioritize",
        "project plan",
        "game theory",
    ],
    &[
        "philosophy",
        "philosophical",
        "consciousness",
        "epistemology",
        "free will",
        "metaphysics",
        "existential",
        "ontology",
    ],
    &[
        "sql",
        "database",
        "schema",
        "postgres",
        "postgresql",
        "mysql",
        "normalization",
        "foreign key",
        "primary key",
    ],
    &[
        "vulnerability",
        "encryption",
        "exploit",
        "cryptography",
        "xss",
        "authentication",
        "malware",
        "firewall",
        "cipher",
        "threat model",
    ],
];

const REASONING: &[&str] = &[
    "step by step",
    "show your work",
    "show all your work",
    "show all work",
    "show your reasoning",
    "show all reasoning",
    "show your full reasoning",
    "show the reasoning",
    "chain of thought",
    "reasoning process",
    "thought process",
    "thinking process",
    "intermediate step",
    "intermediate steps",
    "intermediate result",
    "intermediate results",
    "every step",
    "each step",
    "every single step",
    "all steps",
    "all the steps",
    "full reasoning",
    "complete reasoning",
    "detailed reasoning",
    "entire reasoning",
    "reasoning trace",
    "reasoning chain",
    "think aloud",
    "think out loud",
    "skip no steps",
    "do not skip",
    "don't skip",
    "dont skip",
    "omit nothing",
    "full derivation",
    "complete derivation",
    "show the derivation",
    "explain each",
    "explain every",
    "line of reasoning",
    "reasoning behind",
    "spell out",
];

const REASONING_WEAK: &[&str] = &[
    "explain why",
    "explain how",
    "explain your",
    "walk me through",
    "walk through",
    "think carefully",
    "think through",
    "reason through",
    "justify",
    "in detail",
    "detailed explanation",
    "thoroughly",
    "rationale",
    "before answering",
    "before giving",
    "derive",
    "working",
    "reasoning",
];

const RUBRIC: &[&str] = &[
    "rubric",
    "grade",
    "grading",
    "grader",
    "judge",
    "evaluate the response",
    "evaluate the following response",
    "evaluate the assistant",
    "rate the response",
    "rate the following",
    "score the response",
    "score the following",
    "response a",
    "response b",
    "response 1",
    "response 2",
    "which response",
    "better response",
    "assistant's response",
    "assistant response",
    "model response",
    "model's response",
    "ai response",
    "candidate response",
    "candidate answer",
    "on a scale",
    "scale of 1",
    "from 1 to",
    "1 to 10",
    "1 to 5",
    "helpfulness",
    "harmlessness",
    "honesty",
    "criteria",
    "criterion",
    "preferred",
    "preference",
    "pairwise",
    "reward",
    "score between",
    "final score",
    "score",
    "scores",
];

const TERSE: &[&str] = &[
    "answer with only",
    "respond with only",
    "reply with only",
    "only the letter",
    "only the final answer",
    "only the answer",
    "only the number",
    "only the label",
    "only the category",
    "only the translation",
    "just the answer",
    "just the letter",
    "just the number",
    "single word",
    "one word",
    "no explanation",
    "without explanation",
    "without any explanation",
    "return only",
    "output only",
    "only output",
    "nothing else",
];

/// One hash map over word n-grams (n ≤ 3); a phrase may carry several hits.
static LEXICON: LazyLock<HashMap<u64, Vec<Hit>>> = LazyLock::new(|| {
    let mut m: HashMap<u64, Vec<Hit>> = HashMap::new();
    let mut add = |phrase: &str, hit: Hit| {
        let mut h = 0u64;
        for (i, w) in words(phrase).enumerate() {
            h = if i == 0 {
                word_hash(w.as_bytes())
            } else {
                join(h, word_hash(w.as_bytes()))
            };
        }
        let v = m.entry(h).or_default();
        if !v.contains(&hit) {
            v.push(hit);
        }
    };
    for (i, list) in AREA_WORDS.iter().enumerate() {
        for p in *list {
            add(p, Hit::Area(i as u8));
        }
    }
    for p in REASONING {
        add(p, Hit::Reasoning);
    }
    for p in REASONING_WEAK {
        add(p, Hit::ReasoningWeak);
    }
    for p in RUBRIC {
        add(p, Hit::Rubric);
    }
    for p in TERSE {
        add(p, Hit::Terse);
    }
    m
});

/// Lowercased words of a lexicon phrase (apostrophes kept, `-` splits).
fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '+'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// FNV-1a, 64 bits: stable across runs and platforms, so sketches can be
/// compared between the live detector and a replayed log.
pub fn word_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Order-sensitive combination of two hashes.
pub fn join(a: u64, b: u64) -> u64 {
    (a.rotate_left(17) ^ b).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// What one text says about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Capability areas touched, one bit per [`AREAS`] entry.
    pub areas: u32,
    pub reasoning: bool,
    pub rubric: bool,
    pub terse: bool,
    /// Lists lettered options (A), B), C) ...): a multiple-choice item.
    pub choices: bool,
    /// Words seen.
    pub words: u32,
    /// Hash of the first [`FRAME`] skeleton words (0 when the text is too
    /// short to have a frame and a slot).
    pub prefix: u64,
    /// Hash of the last [`FRAME`] skeleton words (0 likewise).
    pub suffix: u64,
    /// Hash of the whole skeleton-free word sequence: equal texts, equal hash.
    pub full: u64,
}

/// Words at each end that form a template's frame.
pub const FRAME: usize = 6;

/// Analyse one text. `buf` is scratch space reused between calls.
pub fn analyse(text: &str, buf: &mut Vec<u64>) -> Features {
    let lex = &*LEXICON;
    buf.clear();
    let mut f = Features::default();
    let (mut strong, mut weak, mut rubric) = (0u32, 0u32, 0u32);
    let mut last_rubric = 0u64;
    let (mut w1, mut w2) = (0u64, 0u64); // previous two word hashes
    let mut full = 0u64;
    let mut in_quote = false;
    let mut sentence_start = true;
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut lower = [0u8; 64];
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'`' {
            in_quote = !in_quote;
            if !in_quote {
                buf.push(word_hash(b"\"q\""));
            }
            i += 1;
            continue;
        }
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'\'' || b == b'+' || b >= 0x80;
        if !is_word(c) {
            if matches!(c, b'.' | b'?' | b'!' | b'\n' | b':') {
                sentence_start = true;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_word(bytes[i]) {
            i += 1;
        }
        let word = &bytes[start..i];
        let n = word.len().min(lower.len());
        let mut digit = false;
        for (d, s) in lower.iter_mut().zip(&word[..n]) {
            digit |= s.is_ascii_digit();
            *d = s.to_ascii_lowercase();
        }
        let wl = &lower[..n];
        let h = word_hash(wl);
        full = join(full, h);
        f.words += 1;
        // Lexicon: this word, and the pair and triple ending at it.
        let pair = join(w1, h);
        let triple = join(join(w2, w1), h);
        for key in [h, pair, triple] {
            if let Some(hits) = lex.get(&key) {
                for hit in hits {
                    match *hit {
                        Hit::Area(a) => f.areas |= 1 << a,
                        Hit::Reasoning => strong += 1,
                        Hit::ReasoningWeak => weak += 1,
                        Hit::Rubric => {
                            if key != last_rubric {
                                rubric += 1;
                                last_rubric = key;
                            }
                        }
                        Hit::Terse => f.terse = true,
                    }
                }
            }
        }
        w2 = w1;
        w1 = h;
        if !in_quote {
            let skeleton = if digit {
                word_hash(b"#")
            } else if word[0].is_ascii_uppercase() && !sentence_start {
                word_hash(b"N")
            } else {
                h
            };
            buf.push(skeleton);
        }
        sentence_start = false;
    }
    f.reasoning = strong > 0 || weak >= 2;
    f.choices = choices(bytes);
    f.rubric = rubric >= 2;
    f.full = full;
    if buf.len() >= 2 * FRAME {
        f.prefix = buf[..FRAME].iter().fold(1, |a, b| join(a, *b));
        f.suffix = buf[buf.len() - FRAME..].iter().fold(2, |a, b| join(a, *b));
    }
    f
}

/// Three or more of `A)`, `B)`, `C)`, `D)` (or `(A)`, `A.` at a line start).
fn choices(b: &[u8]) -> bool {
    let mut seen = 0u8;
    for (i, c) in b.iter().enumerate() {
        if !(b'A'..=b'D').contains(c) {
            continue;
        }
        let next = b.get(i + 1).copied();
        let prev = i.checked_sub(1).map(|p| b[p]);
        let marked = next == Some(b')')
            || (next == Some(b'.') && matches!(prev, None | Some(b'\n')))
            || (prev == Some(b'(') && next == Some(b')'));
        if marked {
            seen |= 1 << (c - b'A');
        }
    }
    seen.count_ones() >= 3
}

/// Names of the areas set in `mask`.
pub fn area_names(mask: u32) -> Vec<&'static str> {
    AREAS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(t: &str) -> Features {
        analyse(t, &mut Vec::new())
    }

    #[test]
    fn reasoning_elicitation_is_seen_in_its_usual_wordings() {
        assert!(a("Solve x^2 = 4. Explain step-by-step.").reasoning);
        assert!(a("Show every intermediate step of the derivation").reasoning);
        assert!(a("Please show your work").reasoning);
        assert!(!a("What is the capital of France?").reasoning);
        assert!(
            !a("Explain why the sky is blue").reasoning,
            "one weak phrase"
        );
    }

    #[test]
    fn areas_and_rubrics_are_tagged() {
        let f = a("Write a Python function that computes the integral of a polynomial");
        assert_eq!(area_names(f.areas), vec!["math", "coding"]);
        assert!(a("Using the rubric below, score the response from 1 to 10").rubric);
        assert!(!a("Classify this ticket as billing or technical").rubric);
        assert!(a("Answer with only the letter of the correct option").terse);
        assert!(a("Q?\nA) 1\nB) 2\nC) 3\nD) 4").choices);
        assert!(!a("Plan A) is fine, plan B) too").choices);
    }

    #[test]
    fn template_frames_survive_slot_variation() {
        let x = a("Please answer the following question carefully: what is 12 times 7? Reply in one paragraph with all details");
        let y = a("Please answer the following question carefully: who wrote \"Hamlet\" and when? Reply in one paragraph with all details");
        assert_eq!(x.prefix, y.prefix);
        assert_eq!(x.suffix, y.suffix);
        assert_ne!(x.full, y.full);
        let z =
            a("Numbers 12 and 13 differ from Alice's 14 and 15 in one way only, said Bob to me");
        let w =
            a("Numbers 99 and 98 differ from Carol's 14 and 15 in one way only, said Dave to me");
        assert_eq!(z.prefix, w.prefix, "digits and names are slots");
        assert_eq!(a("hi").prefix, 0, "too short for a frame");
    }
}
