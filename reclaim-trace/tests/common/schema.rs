//! Validation against the JSON Schema files in `schema/` (the published contract).

use std::path::PathBuf;

use serde_json::Value;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema")
}

fn load(name: &str) -> Value {
    let p = schema_dir().join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Validate `instance` against `schema/<name>` (a record schema references its summary schema
/// by `$id`; both summary versions are registered).
pub fn validate(name: &str, instance: &Value) {
    let [v1, v2] = ["summary-v1.schema.json", "summary-v2.schema.json"].map(load);
    let id = |s: &Value| s["$id"].as_str().unwrap().to_string();
    let registry = jsonschema::Registry::new()
        .add(id(&v1), jsonschema::Resource::from_contents(v1))
        .unwrap()
        .add(id(&v2), jsonschema::Resource::from_contents(v2))
        .unwrap()
        .prepare()
        .unwrap();
    let schema = load(name);
    let v = jsonschema::options()
        .with_registry(&registry)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "instance does not match {name}:\n{}",
        errors.join("\n")
    );
}
