//! Replays of a destination's dead letters (`braid destinations replay`): which dead letters a
//! request names, and what came of it. The request is an object in the lake beside the
//! destination's state (`.../replay/requests/<id>.json`); the deliverer that runs the
//! destination (`braid serve`) sends the dead letters it names again, with their ids, takes
//! those delivered out of the dead letters, and writes the result beside
//! (`.../replay/done/<id>.json`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::timestamp;

/// A request to send dead letters again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayRequest {
    /// Its id (the time it was made, then a random part): requests are replayed in its order.
    pub id: String,
    /// Only dead letters kept at or after this time (ms).
    pub from: Option<i64>,
    /// Only dead letters kept before this time (ms).
    pub to: Option<i64>,
    /// Only dead letters of this failure class (`refused`, `retries_exhausted`).
    pub class: Option<String>,
}

/// The failure classes a dead letter may have.
pub const CLASSES: [&str; 2] = ["refused", "retries_exhausted"];

impl ReplayRequest {
    /// Whether it names `line`, a dead letter as the lake keeps it (`{"at", "class", ...}`).
    pub fn names(&self, line: &Value) -> bool {
        let at = line.get("at").and_then(Value::as_i64).unwrap_or(0);
        let class = line
            .get("class")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.from.is_none_or(|from| at >= from)
            && self.to.is_none_or(|to| at < to)
            && self.class.as_deref().is_none_or(|c| c == class)
    }

    /// Whether a dead letter object of the day `date` (`YYYY-MM-DD`, from its key) may hold
    /// some it names.
    pub fn may_hold(&self, date: &str) -> bool {
        let day = |ms: i64| {
            timestamp::from_unix_millis(ms)
                .map(|at| timestamp::format(at).chars().take(10).collect::<String>())
        };
        self.from
            .and_then(day)
            .is_none_or(|first| date >= first.as_str())
            && self
                .to
                .and_then(day)
                .is_none_or(|last| date <= last.as_str())
    }

    /// Checks what a person typed: a class that is one, a range that is one.
    ///
    /// # Errors
    ///
    /// The setting and the problem.
    pub fn check(&self) -> Result<(), String> {
        if let Some(class) = &self.class
            && !CLASSES.contains(&class.as_str())
        {
            return Err(format!(
                "--class: {class:?} is not a failure class ({})",
                CLASSES.join(", ")
            ));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err("--from: it must come before --to".to_owned());
        }
        Ok(())
    }
}

/// What came of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayResult {
    /// The request.
    pub request: ReplayRequest,
    /// Dead letters delivered (and taken out of the dead letters).
    pub delivered: u64,
    /// Dead letters it named that are still dead letters (a delivery failed: the rest waits
    /// for another replay).
    pub kept: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
    /// When it ended (ms).
    pub finished_at: i64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_names_dead_letters_by_time_and_class() {
        let day = 86_400_000;
        let request = ReplayRequest {
            id: "r".into(),
            from: Some(10 * day),
            to: Some(12 * day),
            class: Some("refused".into()),
        };
        assert!(request.names(&json!({"at": 10 * day, "class": "refused"})));
        assert!(
            !request.names(&json!({"at": 12 * day, "class": "refused"})),
            "to is excluded"
        );
        assert!(!request.names(&json!({"at": 10 * day - 1, "class": "refused"})));
        assert!(!request.names(&json!({"at": 11 * day, "class": "retries_exhausted"})));
        assert!(ReplayRequest::default().names(&json!({"at": 0, "class": "x"})));
        // The days from 1970-01-11 (day 10) to 1970-01-13 (whose first instant ends it).
        assert!(!request.may_hold("1970-01-10"));
        assert!(request.may_hold("1970-01-11"));
        assert!(request.may_hold("1970-01-13"));
        assert!(!request.may_hold("1970-01-14"));
        assert!(request.check().is_ok());
        let wrong = ReplayRequest {
            class: Some("gone".into()),
            ..ReplayRequest::default()
        };
        assert!(
            wrong
                .check()
                .unwrap_err()
                .contains("--class: \"gone\" is not a failure class")
        );
        let backwards = ReplayRequest {
            from: Some(2),
            to: Some(1),
            ..ReplayRequest::default()
        };
        assert!(backwards.check().unwrap_err().contains("--from"));
    }
}
