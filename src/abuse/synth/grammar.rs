//! Combinatorial prompt grammars: every slot is drawn, so two prompts of
//! one family share structure but rarely text.

use rand::rngs::StdRng;
use rand::Rng;

/// Pick one.
pub fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

const NAMES: &[&str] = &[
    "Alice", "Bob", "Priya", "Chen", "Mateo", "Fatima", "Olga", "Kwame", "Sofia", "Hiro", "Lena",
    "Omar", "Grace", "Ivan", "Zara", "Diego",
];
const ITEMS: &[&str] = &[
    "apples", "marbles", "books", "tickets", "coins", "widgets", "stamps", "cookies", "shares",
    "bottles",
];
const LANGS: &[&str] = &[
    "Python",
    "Rust",
    "JavaScript",
    "Go",
    "Java",
    "TypeScript",
    "C++",
    "Kotlin",
];
const TASKS: &[&str] = &[
    "reverses a linked list",
    "parses a CSV line with quoted fields",
    "finds the longest palindromic substring",
    "merges overlapping intervals",
    "implements an LRU cache",
    "computes the edit distance between two strings",
    "detects a cycle in a directed graph",
    "serialises a binary tree to a string",
    "rate-limits calls with a token bucket",
    "validates an email address without regex",
    "flattens a nested dictionary",
    "schedules tasks with dependencies (topological sort)",
];
const TOPICS: &[&str] = &[
    "the French Revolution",
    "the fall of the Roman Empire",
    "the Meiji restoration",
    "the causes of World War I",
    "the Silk Road trade",
    "the Industrial Revolution in Britain",
    "the Ottoman Empire's decline",
    "the Cold War arms race",
];

/// A capability-area question with its slots filled; `area` indexes the
/// generator's own list, not the detector's lexicon.
pub fn area_question(rng: &mut StdRng, area: usize) -> String {
    let a = rng.random_range(2..60);
    let b = rng.random_range(2..40);
    let c = rng.random_range(1..12);
    let name = pick(rng, NAMES);
    let other = pick(rng, NAMES);
    match area % 16 {
        0 => match rng.random_range(0..4) {
            0 => format!("{name} has {a} {} and gives {other} {b} of them, then buys {c} times as many as remain. How many does {name} have now?", pick(rng, ITEMS)),
            1 => format!("Find all real solutions of the equation x^2 - {a}x + {} = 0.", b * c),
            2 => format!("Prove that the sum of the first {a} odd integers is a perfect square."),
            _ => format!("Compute the integral of x^{c} * e^({b}x) dx and check the result by differentiation."),
        },
        1 => format!(
            "Write a {} function that {}. Include tests and state its time complexity.",
            pick(rng, LANGS),
            pick(rng, TASKS)
        ),
        2 => format!(
            "You are an agent with tools search(query), read_url(url) and calculator(expr). Plan the tool calls needed to {} and show the sequence of actions.",
            pick(rng, &["find the cheapest flight from Lisbon to Oslo next {} and convert the price to yen", "compare the population growth of three cities", "book a meeting room for {} people and notify attendees", "audit a repository for outdated dependencies"]).replace("{}", &c.to_string())
        ),
        3 => format!(
            "Given a dataset of {a}0 customers with columns age, income, region and churn, how would you test whether churn correlates with income? Describe the regression and the statistics you would report (sample size {}).",
            b * 10
        ),
        4 => format!(
            "A projectile is launched at {a} m/s at {} degrees. Neglecting friction, what is its maximum height and range under gravity?",
            10 + b
        ),
        5 => format!(
            "Balance the chemical reaction for the combustion of C{c}H{} and compute the moles of oxygen needed for {a} g of the compound.",
            2 * c + 2
        ),
        6 => format!(
            "Explain how {} regulates {} in a eukaryotic cell, naming the proteins involved.",
            pick(rng, &["the p53 protein", "mitosis checkpoint signalling", "the sodium-potassium pump", "RNA interference", "the Krebs cycle enzyme citrate synthase"]),
            pick(rng, &["cell division", "gene expression", "energy production", "membrane potential"])
        ),
        7 => format!(
            "Logic puzzle: {name}, {other} and {} each either always tell the truth or always lie. {name} says '{other} is a liar'. {other} says 'exactly {} of us are knights'. Deduce who is who.",
            pick(rng, NAMES),
            c % 3 + 1
        ),
        8 => format!(
            "Write a {} about {} in the style of {}.",
            pick(rng, &["short story", "sonnet", "haiku sequence", "limerick", "screenplay scene"]),
            pick(rng, &["a lighthouse keeper", "a lost robot", "the last day of summer", "a chess grandmaster", "a city under snow"]),
            pick(rng, &["Raymond Carver", "Emily Dickinson", "a noir detective novel", "Ursula K. Le Guin"])
        ),
        9 => format!(
            "Under common law, is a contract formed if {name} accepts an offer by email after {other} posted a revocation {c} hours earlier? Discuss liability and the relevant precedent."
        ),
        10 => format!(
            "A {a}-year-old patient presents with {} and {}. What is the differential diagnosis and first-line treatment?",
            pick(rng, &["fever", "chest pain", "persistent cough", "joint swelling", "fatigue"]),
            pick(rng, &["weight loss", "night sweats", "shortness of breath", "a rash", "headache"])
        ),
        11 => format!(
            "If I invest ${a}00 a month at {c}% compound interest for {b} years, what is the final value, and how does inflation of {}% change the real return?",
            c % 4 + 1
        ),
        12 => format!(
            "Analyse {} : its economic, social and political causes, and its long-term historical consequences.",
            pick(rng, TOPICS)
        ),
        13 => format!(
            "Is it morally permissible to {}? Compare a utilitarian and a deontological answer to this ethical dilemma.",
            pick(rng, &["lie to protect a friend", "break a promise to save a stranger", "divert a runaway trolley", "use patient data without consent for research"])
        ),
        14 => format!(
            "Write a SQL query over tables orders(id, customer_id, total, created_at) and customers(id, region) that returns the top {c} regions by revenue in the last {a} days, and explain which index the database needs."
        ),
        _ => format!(
            "Review this {} handler for security vulnerabilities ({}) and propose fixes: def {}(u, p): return db.execute(\"SELECT * FROM users WHERE name='\" + u + \"' AND pw='\" + p + \"'\")",
            pick(rng, &["login", "password reset", "signup", "admin lookup"]),
            pick(rng, &["SQL injection, XSS, weak password hashing", "injection and broken authentication", "timing attacks and missing rate limits"]),
            pick(rng, &["login", "check_user", "auth", "verify"])
        ),
    }
}

/// Everyday chat a person types into an assistant.
pub fn chat_message(rng: &mut StdRng) -> String {
    let name = pick(rng, NAMES);
    let n = rng.random_range(2..20);
    let everyday = [
        format!("can you help me write a polite email to my landlord about the broken heater? it's been {n} days"),
        format!("what should I cook tonight with {}, rice and some leftover spinach?", pick(rng, &["chicken", "tofu", "chickpeas", "salmon"])),
        format!("give me {n} name ideas for a {} shop", pick(rng, &["coffee", "bike repair", "plant", "vintage clothing"])),
        format!("my friend {name} is turning {}. gift ideas under 50 euros?", 20 + n),
        format!("how do I get red wine out of a {} ?", pick(rng, &["carpet", "white shirt", "couch cushion"])),
        format!("plan a {n}-day trip to {} on a budget", pick(rng, &["Lisbon", "Kyoto", "Mexico City", "Tbilisi", "Edinburgh"])),
        format!("rewrite this to sound more professional: hey {name}, cant make it tmrw, sorry"),
        "what's the difference between a latte and a flat white".to_string(),
        format!("tips for sleeping better when working night shifts? I've tried melatonin {n} times"),
        format!("is it worth learning {} in 2026?", pick(rng, LANGS)),
        format!("summarize the plot of {} in a few sentences", pick(rng, &["Hamlet", "Moby Dick", "Pride and Prejudice", "Dune"])),
        format!("how many calories are in {n} slices of pizza roughly"),
    ];
    let base = if rng.random_bool(0.45) {
        {
            let a = rng.random_range(0..16);
            area_question(rng, a)
        }
    } else {
        everyday[rng.random_range(0..everyday.len())].clone()
    };
    let wrapped = match rng.random_range(0..6) {
        0 => format!("hey, {base}"),
        1 => format!("{base} thanks!"),
        2 => format!("quick question: {base}"),
        _ => base,
    };
    // People sometimes ask for the steps, too.
    if rng.random_bool(0.06) {
        format!("{wrapped} can you go step by step?")
    } else {
        wrapped
    }
}

/// A follow-up in a conversation.
pub fn follow_up(rng: &mut StdRng) -> String {
    pick(
        rng,
        &[
            "thanks! can you make it shorter?",
            "ok and what about the second option?",
            "that didn't work, any other idea?",
            "can you explain that last part again, simpler?",
            "great. now make it more formal",
            "why is that?",
            "what if I only have half the time?",
            "could you give an example?",
        ],
    )
    .to_string()
}

/// Prose of about `sentences` sentences on a random subject, used as a
/// document, article, review or text to translate.
pub fn prose(rng: &mut StdRng, sentences: usize) -> String {
    let subj = [
        "The city council",
        "Our support team",
        "The new firmware",
        "Quarterly revenue",
        "The research group",
        "A local bakery",
        "The shipping partner",
        "Customer feedback",
        "The museum",
        "The football club",
    ];
    let verb = [
        "announced",
        "reported",
        "delayed",
        "improved",
        "reviewed",
        "expanded",
        "criticised",
        "launched",
    ];
    let obj = [
        "a plan to renovate the old station",
        "longer opening hours during the holidays",
        "a fix for the battery drain issue",
        "a partnership with two regional suppliers",
        "higher costs for raw materials",
        "the results of a six-month pilot",
        "a change to the refund policy",
        "new accessibility features",
    ];
    let tail = [
        "after months of discussion.",
        "despite concerns from residents.",
        "according to a statement on Tuesday.",
        "which surprised analysts.",
        "and more details will follow next week.",
        "with mixed reactions online.",
    ];
    (0..sentences)
        .map(|_| {
            format!(
                "{} {} {} {}",
                pick(rng, &subj),
                pick(rng, &verb),
                pick(rng, &obj),
                pick(rng, &tail)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A paraphrasable reasoning demand, as distillation harnesses append.
pub fn reasoning_demand(rng: &mut StdRng) -> String {
    let verb = pick(
        rng,
        &[
            "Explain your reasoning step by step",
            "Think step-by-step and show every intermediate step",
            "Show your full reasoning before the answer",
            "Walk through your complete reasoning, skipping no steps",
            "Give a detailed chain of thought, then the final answer",
            "Lay out each step of your thought process",
        ],
    );
    let extra = pick(
        rng,
        &[
            "",
            " and justify each step.",
            ", then state the final answer on its own line.",
            ". Be exhaustive.",
            " and double-check the result at the end.",
        ],
    );
    format!("{verb}{extra}")
}
