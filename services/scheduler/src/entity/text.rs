//! How the scheduler's tables store small collections in one text column, readable in the
//! database: labels as sorted `k=v` lines, names (networks, drivers) as sorted lines. And the one
//! test for a unique-key clash.

/// Labels from their stored `k=v` lines.
pub fn labels<C: FromIterator<(String, String)>>(text: &str) -> C {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Labels as sorted `k=v` lines.
pub fn labels_text<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    pairs.join("\n")
}

/// Names from their stored lines (empty lines skipped).
pub fn names<C: FromIterator<String>>(text: &str) -> C {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Names as sorted, distinct lines.
pub fn names_text<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let set: std::collections::BTreeSet<&String> =
        names.into_iter().filter(|n| !n.is_empty()).collect();
    set.into_iter().cloned().collect::<Vec<_>>().join("\n")
}

/// Whether a database error is a clash on a primary key or unique index.
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
