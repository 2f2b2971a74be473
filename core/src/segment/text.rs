//! The readable text form of a condition tree, read into the tree's JSON form (so that the one
//! reader of trees checks both, and a text and its tree never mean different things).
//!
//! ```text
//! plan = "pro" and performed "Order Completed" where total > 10 at least 2 times in 30d
//! not performed "App Opened" in 7d
//! performed "Product Viewed" then "Order Completed" within 1h in 30d
//! (member vip or computed spend_90d >= 100) and consent marketing and has identifier email
//! signed_up_at within last 7 days and not member churned
//! ```
//!
//! `and` binds tighter than `or`; `not` applies to what follows it. A trait is a bare name or a
//! dotted path (`address.city`), or `trait "any name"`; names and events with spaces are quoted
//! as JSON strings, and values are JSON (`"pro"`, `3`, `true`, `["a", "b"]`). Filters after
//! `where` are separated by commas. Counts: `at least N times`, `at most N`, `exactly N`,
//! `once`; windows: `in 30d` (or `in the last 30 days`), `in 12h`, `in 30d..90d`, `ever` (the
//! default); a funnel's time: `within 1h` (or `within 45 minutes`).

use serde_json::{Map, Value, json};

/// Longest text of a condition, in bytes.
pub(super) const MAX_TEXT_BYTES: usize = 8_192;

/// A text that cannot be read: the byte at which, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TextError {
    /// Where (a byte offset into the text).
    pub at: usize,
    /// What is wrong.
    pub why: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A bare word: a keyword, a name, a path, a window (`30d`) or a span (`1h`).
    Word(String),
    /// A JSON string, number or literal.
    Value(Value),
    /// `(`, `)`, `[`, `]`, `,`, or a comparison sign.
    Sign(&'static str),
}

const SIGNS: [&str; 10] = ["!=", "<=", ">=", "=", "<", ">", "(", ")", "[", "]"];

/// Reads a text into a condition tree's JSON form, nested at most `max_depth` deep.
pub(super) fn read(text: &str, max_depth: usize) -> Result<Value, TextError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(TextError {
            at: 0,
            why: format!("a condition's text is at most {MAX_TEXT_BYTES} bytes"),
        });
    }
    let tokens = tokens(text)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        end: text.len(),
        depth: 0,
        max_depth,
    };
    let tree = parser.or()?;
    if let Some((at, token)) = parser.tokens.get(parser.next) {
        return Err(TextError {
            at: *at,
            why: format!("expected and, or, or the end, found {}", shown(token)),
        });
    }
    Ok(tree)
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, TextError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        let at = text.len() - trimmed.len();
        rest = trimmed;
        let Some(first) = rest.chars().next() else {
            return Ok(out);
        };
        let error = |why: &str| TextError {
            at,
            why: why.to_owned(),
        };
        if first == '"' {
            // A JSON string: up to the first quote not escaped.
            let mut escaped = false;
            let end = rest
                .char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    let closes = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map(|(i, _)| i + 1)
                .ok_or_else(|| error("a text that is not closed by \""))?;
            let (string, after) = rest.split_at(end);
            let value: Value = serde_json::from_str(string).map_err(|e| error(&e.to_string()))?;
            out.push((at, Token::Value(value)));
            rest = after;
        } else if first == ',' {
            out.push((at, Token::Sign(",")));
            rest = &rest[1..];
        } else if let Some(sign) = SIGNS.into_iter().find(|s| rest.starts_with(s)) {
            out.push((at, Token::Sign(sign)));
            rest = &rest[sign.len()..];
        } else if first.is_ascii_alphanumeric() || first == '_' || first == '-' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.:".contains(c)))
                .unwrap_or(rest.len());
            let (word, after) = rest.split_at(end);
            let token = match word {
                "true" => Token::Value(Value::Bool(true)),
                "false" => Token::Value(Value::Bool(false)),
                "null" => Token::Value(Value::Null),
                _ => match serde_json::from_str::<serde_json::Number>(word) {
                    Ok(number) => Token::Value(Value::Number(number)),
                    Err(_) => Token::Word(word.to_owned()),
                },
            };
            out.push((at, token));
            rest = after;
        } else {
            return Err(error(&format!("{first:?} is not part of a condition")));
        }
    }
}

fn shown(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("{word:?}"),
        Token::Value(value) => value.to_string(),
        Token::Sign(sign) => format!("{sign:?}"),
    }
}

/// One condition, or several combined.
fn combined(combine: &str, items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        json!({ combine: items })
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
    depth: usize,
    max_depth: usize,
}

/// Words that start a condition, and so cannot be bare trait names.
const KEYWORDS: [&str; 11] = [
    "and",
    "or",
    "not",
    "performed",
    "member",
    "consent",
    "has",
    "computed",
    "trait",
    "then",
    "where",
];

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(at, _)| *at)
    }

    fn error(&self, expected: &str) -> TextError {
        let found = self.peek().map_or_else(|| "the end".to_owned(), shown);
        TextError {
            at: self.at(),
            why: format!("expected {expected}, found {found}"),
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    /// Takes `word` if it is next.
    fn eat(&mut self, word: &str) -> bool {
        let next = self.is_word(word) || matches!(self.peek(), Some(Token::Sign(s)) if *s == word);
        self.next += usize::from(next);
        next
    }

    fn expect(&mut self, word: &str) -> Result<(), TextError> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(self.error(&format!("{word:?}")))
        }
    }

    fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(_, t)| t.clone());
        self.next += 1;
        token
    }

    /// A name: a bare word that is not a keyword, or a JSON string.
    fn name(&mut self, what: &str) -> Result<String, TextError> {
        match self.peek() {
            Some(Token::Word(word)) if !KEYWORDS.contains(&word.as_str()) => {
                let word = word.clone();
                self.next += 1;
                Ok(word)
            }
            Some(Token::Value(Value::String(text))) => {
                let text = text.clone();
                self.next += 1;
                Ok(text)
            }
            _ => Err(self.error(what)),
        }
    }

    fn whole_number(&mut self, what: &str) -> Result<u64, TextError> {
        match self.peek() {
            Some(Token::Value(Value::Number(n))) if n.is_u64() => {
                let n = n.as_u64().unwrap_or_default();
                self.next += 1;
                Ok(n)
            }
            _ => Err(self.error(what)),
        }
    }

    fn or(&mut self) -> Result<Value, TextError> {
        let mut items = vec![self.and()?];
        while self.eat("or") {
            items.push(self.and()?);
        }
        Ok(combined("or", items))
    }

    fn and(&mut self) -> Result<Value, TextError> {
        let mut items = vec![self.unary()?];
        while self.eat("and") {
            items.push(self.unary()?);
        }
        Ok(combined("and", items))
    }

    fn unary(&mut self) -> Result<Value, TextError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.error(&format!("at most {} nested conditions", self.max_depth)));
        }
        let value = if self.eat("not") {
            if self.eat("performed") {
                self.performed(true)
            } else {
                self.unary().map(|inner| json!({ "not": inner }))
            }
        } else if self.eat("(") {
            let inner = self.or()?;
            self.expect(")")?;
            Ok(inner)
        } else {
            self.atom()
        };
        self.depth -= 1;
        value
    }

    fn atom(&mut self) -> Result<Value, TextError> {
        if self.eat("performed") {
            return self.performed(false);
        }
        if self.eat("member") {
            self.eat("of");
            return Ok(json!({ "member": self.name("an audience's key")? }));
        }
        if self.eat("consent") {
            self.eat("to");
            return Ok(json!({ "consent": self.name("a consent category")? }));
        }
        if self.eat("has") {
            self.expect("identifier")?;
            return Ok(json!({ "has_identifier": self.name("an identifier type")? }));
        }
        if self.eat("computed") {
            let name = self.name("a computed trait's name")?;
            let (op, value) = self.comparison()?;
            return Ok(json!({ "computed": name, "op": op, "value": value }));
        }
        self.eat("trait");
        let name = self.name("a condition (a trait, performed, member, consent, has identifier, computed, not, or a parenthesis)")?;
        if self.eat("exists") {
            return Ok(json!({ "trait": name, "op": "exists" }));
        }
        if self.eat("within") {
            self.expect("last")?;
            let days = self.whole_number("a number of days")?;
            if !self.eat("days") {
                self.expect("day")?;
            }
            return Ok(json!({ "trait": name, "op": "within_last_days", "value": days }));
        }
        for op in ["before", "after"] {
            if self.eat(op) {
                let value = self.value()?;
                return Ok(json!({ "trait": name, "op": op, "value": value }));
            }
        }
        let (op, value) = self.comparison()?;
        Ok(json!({ "trait": name, "op": op, "value": value }))
    }

    /// `OP VALUE`, or `exists`.
    fn comparison(&mut self) -> Result<(String, Value), TextError> {
        if self.eat("exists") {
            return Ok(("exists".to_owned(), Value::Null));
        }
        let op = match self.peek() {
            Some(Token::Sign(sign)) if !"()[]".contains(sign) => (*sign).to_owned(),
            Some(Token::Word(word))
                if ["contains", "starts_with", "in"].contains(&word.as_str()) =>
            {
                word.clone()
            }
            _ => {
                return Err(self.error(
                    "a comparison (=, !=, <, <=, >, >=, contains, starts_with, in, exists)",
                ));
            }
        };
        self.next += 1;
        Ok((op, self.value()?))
    }

    /// A JSON value, or a list of them in brackets.
    fn value(&mut self) -> Result<Value, TextError> {
        if self.eat("[") {
            let mut items = Vec::new();
            if !self.eat("]") {
                loop {
                    items.push(self.value()?);
                    if self.eat("]") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            return Ok(Value::Array(items));
        }
        match self.peek() {
            Some(Token::Value(value)) => {
                let value = value.clone();
                self.next += 1;
                Ok(value)
            }
            _ => Err(self.error("a value (\"text\", a number, true, false, or a [list])")),
        }
    }

    /// `where PATH OP VALUE, ...`, if there.
    fn filters(&mut self, into: &mut Map<String, Value>, key: &str) -> Result<(), TextError> {
        if !self.eat("where") {
            return Ok(());
        }
        let mut filters = Vec::new();
        loop {
            let property = self.name("a property")?;
            let (op, value) = self.comparison()?;
            filters.push(json!({ "property": property, "op": op, "value": value }));
            if !self.eat(",") {
                break;
            }
        }
        into.insert(key.to_owned(), Value::Array(filters));
        Ok(())
    }

    /// A length such as `30d`, `1h` or `30d..90d`, or in words: `30 days`, `1 hour`,
    /// `45 minutes`.
    fn length(&mut self, what: &str) -> Result<String, TextError> {
        match self.take() {
            Some(Token::Word(word)) => Ok(word),
            Some(Token::Value(Value::Number(n))) => {
                let units = [
                    ("days", 'd'),
                    ("day", 'd'),
                    ("hours", 'h'),
                    ("hour", 'h'),
                    ("minutes", 'm'),
                    ("minute", 'm'),
                ];
                match units.into_iter().find(|(unit, _)| self.is_word(unit)) {
                    Some((_, unit)) => {
                        self.next += 1;
                        Ok(format!("{n}{unit}"))
                    }
                    None => Err(self.error("days, hours or minutes")),
                }
            }
            _ => {
                self.next -= 1;
                Err(self.error(what))
            }
        }
    }

    fn performed(&mut self, negated: bool) -> Result<Value, TextError> {
        let kind = if negated {
            "not_performed"
        } else {
            "performed"
        };
        let mut out = Map::new();
        out.insert(
            kind.to_owned(),
            Value::String(self.name("an event's name")?),
        );
        self.filters(&mut out, "where")?;
        if self.eat("then") {
            out.insert(
                "then".to_owned(),
                Value::String(self.name("an event's name")?),
            );
            self.filters(&mut out, "then_where")?;
            self.expect("within")?;
            let span = self.length("a time such as 1h")?;
            out.insert("within".to_owned(), Value::String(span));
        }
        if !negated {
            let count = if self.eat("once") {
                Some(("exactly", 1))
            } else if self.eat("at") {
                let which = if self.eat("least") {
                    "at_least"
                } else if self.eat("most") {
                    "at_most"
                } else {
                    return Err(self.error("least or most"));
                };
                Some((which, self.whole_number("a number")?))
            } else if self.eat("exactly") {
                Some(("exactly", self.whole_number("a number")?))
            } else {
                None
            };
            if let Some((which, n)) = count {
                if !self.eat("times") {
                    self.eat("time");
                }
                out.insert(which.to_owned(), Value::from(n));
            }
        }
        if self.eat("in") {
            if self.eat("the") {
                self.expect("last")?;
            }
            let window = self.length("a window such as 30d, 12h or 30d..90d")?;
            out.insert("window".to_owned(), Value::String(window));
        } else if self.eat("ever") {
            out.insert("window".to_owned(), Value::String("all".to_owned()));
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_read_into_trees() {
        let cases = [
            (
                r#"plan = "pro" and performed "Order Completed" where total > 10, currency = "EUR" at least 2 times in 30d"#,
                json!({"and": [
                    {"trait": "plan", "op": "=", "value": "pro"},
                    {"performed": "Order Completed", "at_least": 2, "window": "30d",
                     "where": [{"property": "total", "op": ">", "value": 10},
                               {"property": "currency", "op": "=", "value": "EUR"}]}
                ]}),
            ),
            (
                "not performed \"App Opened\" in 7d or not member churned",
                json!({"or": [
                    {"not_performed": "App Opened", "window": "7d"},
                    {"not": {"member": "churned"}}
                ]}),
            ),
            (
                r#"performed "Product Viewed" where category = "shoes" then "Order Completed" within 1h once in 30d..90d"#,
                json!({"performed": "Product Viewed", "then": "Order Completed", "within": "1h",
                       "where": [{"property": "category", "op": "=", "value": "shoes"}],
                       "exactly": 1, "window": "30d..90d"}),
            ),
            (
                "(member of vip or computed spend_90d >= 100.5) and consent to marketing and has identifier email",
                json!({"and": [
                    {"or": [{"member": "vip"}, {"computed": "spend_90d", "op": ">=", "value": 100.5}]},
                    {"consent": "marketing"},
                    {"has_identifier": "email"}
                ]}),
            ),
            (
                r#"signed_up_at within last 7 days and address.city in ["Paris", "Lyon"] and trait "member" exists and seen before "2026-01-01T00:00:00Z""#,
                json!({"and": [
                    {"trait": "signed_up_at", "op": "within_last_days", "value": 7},
                    {"trait": "address.city", "op": "in", "value": ["Paris", "Lyon"]},
                    {"trait": "member", "op": "exists"},
                    {"trait": "seen", "op": "before", "value": "2026-01-01T00:00:00Z"}
                ]}),
            ),
            (
                "a = 1 or b = 2 and c = 3",
                json!({"or": [{"trait": "a", "op": "=", "value": 1},
                              {"and": [{"trait": "b", "op": "=", "value": 2},
                                       {"trait": "c", "op": "=", "value": 3}]}]}),
            ),
            (
                r#"performed "Signed In" then "Order Completed" within 45 minutes in the last 30 days"#,
                json!({"performed": "Signed In", "then": "Order Completed", "within": "45m",
                       "window": "30d"}),
            ),
            (
                r#"performed "Page \"Pricing\"" at most 3 ever"#,
                json!({"performed": "Page \"Pricing\"", "at_most": 3, "window": "all"}),
            ),
        ];
        for (text, tree) in cases {
            assert_eq!(read(text, 16), Ok(tree), "{text}");
        }
    }

    #[test]
    fn errors_say_where_and_what_was_expected() {
        let cases = [
            ("plan = ", 7, "expected a value"),
            ("plan ~ 1", 5, "is not part of a condition"),
            ("plan = 1 plan = 2", 9, "expected and, or, or the end"),
            ("(member vip", 11, "expected \")\""),
            ("performed \"X\" at 3", 17, "expected least or most"),
            (
                "performed \"X\" then \"Y\" in 7d",
                23,
                "expected \"within\"",
            ),
            (
                "performed \"X\" in 7 weeks",
                19,
                "expected days, hours or minutes",
            ),
            ("performed \"X", 10, "not closed"),
            ("and = 1", 0, "expected a condition"),
        ];
        for (text, at, why) in cases {
            let error = read(text, 16).unwrap_err();
            assert_eq!(error.at, at, "{text}: {error:?}");
            assert!(error.why.contains(why), "{text}: {error:?}");
        }
        let deep = format!("{}member x", "not ".repeat(40));
        assert!(read(&deep, 16).unwrap_err().why.contains("nested"));
        assert!(
            read(&"a = 1 or ".repeat(2000), 16)
                .unwrap_err()
                .why
                .contains("at most")
        );
    }
}
