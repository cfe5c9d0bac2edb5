//! `reclaim-trace compare A B [--fail-if ...]`.

use anyhow::Result;

use crate::error::GateFailed;

use crate::{
    cli::CompareArgs,
    export::{compare, record::load_summary},
};

pub fn run(args: CompareArgs) -> Result<()> {
    let mut sides = Vec::new();
    for p in [&args.a, &args.b] {
        let (s, skipped) = load_summary(p)?;
        for (line, why) in skipped {
            eprintln!("reclaim-trace: {}:{line}: {why}; skipped", p.display());
        }
        sides.push(s);
    }
    let (a, b) = (&sides[0], &sides[1]);
    let c = compare::compare(
        (&args.a.display().to_string(), a),
        (&args.b.display().to_string(), b),
        &args.fail_if,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", compare::render(&c));
    }
    if !c.failed.is_empty() {
        let rules: Vec<&str> = c.failed.iter().map(|f| f.rule.as_str()).collect();
        return Err(GateFailed(format!("regression gate failed: {}", rules.join(", "))).into());
    }
    Ok(())
}
