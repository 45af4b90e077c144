//! Rule conditions: a small expression language over an event's fields.
//!
//! `evalexpr` parses the text; Sentinel keeps only what a condition needs (fields, numbers, text, `true`/`false`,
//! comparisons, `&&`/`and`-style logic, `+ - * /`, `abs`, `min`, `max`) and evaluates that in `Decimal` with
//! checked arithmetic, so a funding rate of `0.0005` is exactly `0.0005` and nothing a sender writes is run as code.

use std::fmt;
use std::str::FromStr;

use evalexpr::{build_operator_tree, Node, Operator, Value as Literal};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// A parsed condition, checked for type errors, ready to evaluate.
#[derive(Clone, PartialEq)]
pub struct Condition {
    text: String,
    expr: Expr,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Field(String),
    Number(Decimal),
    Text(String),
    Bool(bool),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Comparison, Box<Expr>, Box<Expr>),
    Arithmetic(Arithmetic, Box<Expr>, Box<Expr>),
    Abs(Box<Expr>),
    Min(Box<Expr>, Box<Expr>),
    Max(Box<Expr>, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Comparison {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Arithmetic {
    Add,
    Sub,
    Mul,
    Div,
}

/// What an expression is known to give before any event is seen: a field can be anything.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Type {
    Number,
    Text,
    Bool,
    Unknown,
}

/// A value while evaluating.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Number(Decimal),
    Text(String),
    Bool(bool),
}

/// Why a condition could not be evaluated on an event: the rule does not fire, and the reason is logged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the event has no field `{0}`")]
    Missing(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` is not true or false")]
    NotABool(String),
    #[error("the arithmetic overflowed or divided by zero")]
    Arithmetic,
}

impl Condition {
    /// Parses and type-checks `text`; the error says what is wrong in words.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let node = build_operator_tree::<evalexpr::DefaultNumericTypes>(text)
            .map_err(|e| format!("cannot parse `{text}`: {e}"))?;
        let expr = lower(&node)?;
        match type_of(&expr)? {
            Type::Bool | Type::Unknown => Ok(Condition {
                text: text.to_string(),
                expr,
            }),
            other => Err(format!(
                "`{text}` gives a {} where a condition (true or false) is needed",
                name(other)
            )),
        }
    }

    /// Whether the condition holds for an event with these fields.
    pub fn holds(&self, fields: &Fields<'_>) -> Result<bool, EvalError> {
        match eval(&self.expr, fields)? {
            Val::Bool(b) => Ok(b),
            other => Err(EvalError::NotABool(show(&other))),
        }
    }

    /// The fields it reads, for `rules test` to show.
    pub fn fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_fields(&self.expr, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

fn collect_fields(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Field(name) => out.push(name.clone()),
        Expr::Number(_) | Expr::Text(_) | Expr::Bool(_) => {}
        Expr::Not(a) | Expr::Neg(a) | Expr::Abs(a) => collect_fields(a, out),
        Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Compare(_, a, b)
        | Expr::Arithmetic(_, a, b)
        | Expr::Min(a, b)
        | Expr::Max(a, b) => {
            collect_fields(a, out);
            collect_fields(b, out);
        }
    }
}

fn name(t: Type) -> &'static str {
    match t {
        Type::Number => "number",
        Type::Text => "text",
        Type::Bool => "true/false value",
        Type::Unknown => "value",
    }
}

/// The parsed tree in Sentinel's own terms; anything outside the language is refused naming it.
fn lower(node: &Node) -> Result<Expr, String> {
    let children = node.children();
    let one = |i: usize| -> Result<Box<Expr>, String> {
        children
            .get(i)
            .ok_or_else(|| "an operator is missing an operand".to_string())
            .and_then(lower)
            .map(Box::new)
    };
    Ok(match node.operator() {
        Operator::RootNode => match children {
            [only] => lower(only)?,
            [] => return Err("the condition is empty".into()),
            _ => return Err("a condition is one expression".into()),
        },
        Operator::Const { value } => match value {
            Literal::Int(i) => Expr::Number(Decimal::from(*i)),
            // Rust prints an f64 as the shortest text that reads back the same: the digits that were written.
            Literal::Float(f) => Expr::Number(
                Decimal::from_str(&f.to_string())
                    .or_else(|_| Decimal::from_scientific(&format!("{f:e}")))
                    .map_err(|_| format!("the number {f} is out of range"))?,
            ),
            Literal::String(s) => Expr::Text(s.clone()),
            Literal::Boolean(b) => Expr::Bool(*b),
            Literal::Tuple(_) | Literal::Empty => return Err("tuples are not supported".into()),
        },
        Operator::VariableIdentifierRead { identifier } => match identifier.as_str() {
            "true" => Expr::Bool(true),
            "false" => Expr::Bool(false),
            _ => Expr::Field(identifier.clone()),
        },
        Operator::Not => Expr::Not(one(0)?),
        Operator::Neg => Expr::Neg(one(0)?),
        Operator::And => Expr::And(one(0)?, one(1)?),
        Operator::Or => Expr::Or(one(0)?, one(1)?),
        Operator::Eq => Expr::Compare(Comparison::Eq, one(0)?, one(1)?),
        Operator::Neq => Expr::Compare(Comparison::Ne, one(0)?, one(1)?),
        Operator::Gt => Expr::Compare(Comparison::Gt, one(0)?, one(1)?),
        Operator::Geq => Expr::Compare(Comparison::Ge, one(0)?, one(1)?),
        Operator::Lt => Expr::Compare(Comparison::Lt, one(0)?, one(1)?),
        Operator::Leq => Expr::Compare(Comparison::Le, one(0)?, one(1)?),
        Operator::Add => Expr::Arithmetic(Arithmetic::Add, one(0)?, one(1)?),
        Operator::Sub => Expr::Arithmetic(Arithmetic::Sub, one(0)?, one(1)?),
        Operator::Mul => Expr::Arithmetic(Arithmetic::Mul, one(0)?, one(1)?),
        Operator::Div => Expr::Arithmetic(Arithmetic::Div, one(0)?, one(1)?),
        Operator::FunctionIdentifier { identifier } => {
            let args: Vec<&Node> = match children {
                [arg] if matches!(arg.operator(), Operator::Tuple) => {
                    arg.children().iter().collect()
                }
                [arg] => match arg.operator() {
                    // `f(a, b)` parses as a function over a root node holding the tuple.
                    Operator::RootNode
                        if arg.children().len() == 1
                            && matches!(arg.children()[0].operator(), Operator::Tuple) =>
                    {
                        arg.children()[0].children().iter().collect()
                    }
                    _ => vec![arg],
                },
                _ => children.iter().collect(),
            };
            let lowered = args
                .into_iter()
                .map(|a| lower(a).map(Box::new))
                .collect::<Result<Vec<_>, _>>()?;
            match (
                identifier.as_str(),
                <[_; 1]>::try_from(lowered.clone()),
                <[_; 2]>::try_from(lowered),
            ) {
                ("abs", Ok([a]), _) => Expr::Abs(a),
                ("min", _, Ok([a, b])) => Expr::Min(a, b),
                ("max", _, Ok([a, b])) => Expr::Max(a, b),
                ("abs" | "min" | "max", _, _) => {
                    return Err(format!(
                        "`{identifier}` takes {} argument(s)",
                        if identifier == "abs" { 1 } else { 2 }
                    ))
                }
                _ => {
                    return Err(format!(
                        "`{identifier}` is not a function conditions may use (abs, min, max)"
                    ))
                }
            }
        }
        Operator::Mod | Operator::Exp => {
            return Err("only + - * / are supported in arithmetic".into())
        }
        Operator::Tuple => return Err("tuples are not supported".into()),
        Operator::Chain => return Err("`;` is not supported: a condition is one expression".into()),
        _ => return Err("assignments are not supported: a condition only reads fields".into()),
    })
}

/// The type an expression gives, or the type error in words.
fn type_of(expr: &Expr) -> Result<Type, String> {
    let want = |e: &Expr, wanted: Type, what: &str| -> Result<(), String> {
        match type_of(e)? {
            Type::Unknown => Ok(()),
            t if t == wanted => Ok(()),
            t => Err(format!(
                "{what} needs a {}, not a {}",
                name(wanted),
                name(t)
            )),
        }
    };
    Ok(match expr {
        Expr::Field(_) => Type::Unknown,
        Expr::Number(_) => Type::Number,
        Expr::Text(_) => Type::Text,
        Expr::Bool(_) => Type::Bool,
        Expr::Not(a) => {
            want(a, Type::Bool, "`!`")?;
            Type::Bool
        }
        Expr::And(a, b) | Expr::Or(a, b) => {
            want(a, Type::Bool, "`&&` and `||`")?;
            want(b, Type::Bool, "`&&` and `||`")?;
            Type::Bool
        }
        Expr::Neg(a) | Expr::Abs(a) => {
            want(a, Type::Number, "arithmetic")?;
            Type::Number
        }
        Expr::Arithmetic(_, a, b) | Expr::Min(a, b) | Expr::Max(a, b) => {
            want(a, Type::Number, "arithmetic")?;
            want(b, Type::Number, "arithmetic")?;
            Type::Number
        }
        Expr::Compare(op, a, b) => {
            let (ta, tb) = (type_of(a)?, type_of(b)?);
            let ordering = !matches!(op, Comparison::Eq | Comparison::Ne);
            if ordering {
                want(a, Type::Number, "`<`, `<=`, `>` and `>=`")?;
                want(b, Type::Number, "`<`, `<=`, `>` and `>=`")?;
            } else if ta != Type::Unknown && tb != Type::Unknown && ta != tb {
                return Err(format!(
                    "`==` and `!=` compare like with like, not a {} with a {}",
                    name(ta),
                    name(tb)
                ));
            }
            Type::Bool
        }
    })
}

/// An event's fields, read once for every rule that looks at the event: the profile showed each comparison
/// parsing its field's text into a `Decimal` again.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// An event has a handful of fields: a short list beats hashing each name.
    top: Vec<(&'a str, Result<Val, EvalError>)>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Fields<'a> {
        let top = map
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Array(_) | Value::Object(_)))
            .map(|(k, v)| (k.as_str(), scalar(k, v)))
            .collect();
        Fields { map, top }
    }

    /// A field's value: `a.b` reads `b` inside the object `a`.
    fn get(&self, path: &str) -> Result<Val, EvalError> {
        if let Some((_, value)) = self.top.iter().find(|(name, _)| *name == path) {
            return value.clone();
        }
        let missing = || EvalError::Missing(path.to_string());
        let mut parts = path.split('.');
        let first = parts.next().ok_or_else(missing)?;
        let mut value = self.map.get(first).ok_or_else(missing)?;
        for part in parts {
            value = value.get(part).ok_or_else(missing)?;
        }
        scalar(path, value)
    }
}

fn scalar(path: &str, value: &Value) -> Result<Val, EvalError> {
    Ok(match value {
        Value::Number(n) => Val::Number(
            decimal(&n.to_string()).ok_or_else(|| EvalError::NotANumber(n.to_string()))?,
        ),
        // Numbers sent as text (`"0.00010000"`, as exchanges write them) are read as numbers once, here.
        Value::String(s) => match decimal(s.trim()) {
            Some(d) => Val::Number(d),
            None => Val::Text(s.clone()),
        },
        Value::Bool(b) => Val::Bool(*b),
        Value::Null | Value::Array(_) | Value::Object(_) => {
            return Err(EvalError::Missing(path.to_string()))
        }
    })
}

fn decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

fn number(v: Val) -> Result<Decimal, EvalError> {
    match v {
        Val::Number(d) => Ok(d),
        Val::Text(t) => decimal(t.trim()).ok_or(EvalError::NotANumber(t)),
        Val::Bool(b) => Err(EvalError::NotANumber(b.to_string())),
    }
}

fn boolean(v: Val) -> Result<bool, EvalError> {
    match v {
        Val::Bool(b) => Ok(b),
        other => Err(EvalError::NotABool(show(&other))),
    }
}

fn show(v: &Val) -> String {
    match v {
        Val::Number(d) => d.to_string(),
        Val::Text(t) => t.clone(),
        Val::Bool(b) => b.to_string(),
    }
}

fn eval(expr: &Expr, fields: &Fields<'_>) -> Result<Val, EvalError> {
    let num = |e: &Expr| eval(e, fields).and_then(number);
    Ok(match expr {
        Expr::Field(path) => fields.get(path)?,
        Expr::Number(d) => Val::Number(*d),
        Expr::Text(t) => Val::Text(t.clone()),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Not(a) => Val::Bool(!boolean(eval(a, fields)?)?),
        // Short-circuit: `has_position && ratio > 0.8` does not read `ratio` without a position.
        Expr::And(a, b) => Val::Bool(boolean(eval(a, fields)?)? && boolean(eval(b, fields)?)?),
        Expr::Or(a, b) => Val::Bool(boolean(eval(a, fields)?)? || boolean(eval(b, fields)?)?),
        Expr::Neg(a) => Val::Number(-num(a)?),
        Expr::Abs(a) => Val::Number(num(a)?.abs()),
        Expr::Min(a, b) => Val::Number(num(a)?.min(num(b)?)),
        Expr::Max(a, b) => Val::Number(num(a)?.max(num(b)?)),
        Expr::Arithmetic(op, a, b) => {
            let (a, b) = (num(a)?, num(b)?);
            Val::Number(
                match op {
                    Arithmetic::Add => a.checked_add(b),
                    Arithmetic::Sub => a.checked_sub(b),
                    Arithmetic::Mul => a.checked_mul(b),
                    Arithmetic::Div => a.checked_div(b),
                }
                .ok_or(EvalError::Arithmetic)?,
            )
        }
        Expr::Compare(op, a, b) => {
            let (a, b) = (eval(a, fields)?, eval(b, fields)?);
            let ordering = match (&a, &b) {
                (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
                // Two numbers sent as text (`"9"`, `"10"`) compare as numbers, not letter by letter.
                (Val::Text(x), Val::Text(y)) => match (decimal(x.trim()), decimal(y.trim())) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    _ if matches!(op, Comparison::Eq | Comparison::Ne) => x.cmp(y),
                    _ => return Err(EvalError::NotANumber(format!("{x}` or `{y}"))),
                },
                // A number equals no text that is not a number (`code == "ABC"` with `"code": "123"`).
                (Val::Number(_), Val::Text(t)) | (Val::Text(t), Val::Number(_))
                    if matches!(op, Comparison::Eq | Comparison::Ne)
                        && decimal(t.trim()).is_none() =>
                {
                    return Ok(Val::Bool(matches!(op, Comparison::Ne)));
                }
                _ => number(a)?.cmp(&number(b)?),
            };
            Val::Bool(match op {
                Comparison::Eq => ordering.is_eq(),
                Comparison::Ne => ordering.is_ne(),
                Comparison::Gt => ordering.is_gt(),
                Comparison::Ge => ordering.is_ge(),
                Comparison::Lt => ordering.is_lt(),
                Comparison::Le => ordering.is_le(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn holds(text: &str, v: Value) -> Result<bool, EvalError> {
        Condition::parse(text)
            .unwrap()
            .holds(&Fields::new(&fields(v)))
    }

    #[test]
    fn compares_in_decimal_exactly() {
        // 0.1 + 0.2 is not 0.3 in binary floating point; it is here.
        assert_eq!(holds("a + b == 0.3", json!({"a": 0.1, "b": 0.2})), Ok(true));
        assert_eq!(
            holds(
                "funding_rate > 0.0005",
                json!({"funding_rate": "0.00050000"})
            ),
            Ok(false)
        );
        assert_eq!(
            holds(
                "funding_rate >= 0.0005",
                json!({"funding_rate": "0.00050000"})
            ),
            Ok(true)
        );
        assert_eq!(holds("price > 65000", json!({"price": 65000.5})), Ok(true));
        // Numbers sent as text compare as numbers.
        assert_eq!(
            holds("bid > ask", json!({"bid": "9", "ask": "10"})),
            Ok(false)
        );
        assert_eq!(holds("a == b", json!({"a": "1.50", "b": "1.5"})), Ok(true));
        assert_eq!(holds("side == \"long\"", json!({"side": "long"})), Ok(true));
        assert!(holds("side > topic", json!({"side": "long", "topic": "x"})).is_err());
        assert_eq!(holds("code == \"ABC\"", json!({"code": "123"})), Ok(false));
        assert_eq!(holds("code != \"ABC\"", json!({"code": 123})), Ok(true));
        assert_eq!(holds("code == \"123\"", json!({"code": 123})), Ok(true));
    }

    #[test]
    fn logic_text_nesting_and_functions() {
        let v =
            json!({"sentiment": -0.8, "topic": "regulation", "pos": {"side": "long"}, "r": -0.001});
        assert_eq!(
            holds("sentiment < -0.5 && topic == \"regulation\"", v.clone()),
            Ok(true)
        );
        assert_eq!(
            holds("sentiment > 0 || pos.side == \"long\"", v.clone()),
            Ok(true)
        );
        assert_eq!(holds("!(sentiment < 0)", v.clone()), Ok(false));
        assert_eq!(
            holds("abs(r) >= 0.001 && max(r, 0) == 0", v.clone()),
            Ok(true)
        );
        assert_eq!(holds("min(1, 2) == 1", v), Ok(true));
    }

    #[test]
    fn a_missing_field_or_a_bad_value_is_an_error_not_a_match() {
        assert_eq!(
            holds("x > 1", json!({})),
            Err(EvalError::Missing("x".into()))
        );
        assert_eq!(
            holds("x > 1", json!({"x": "high"})),
            Err(EvalError::NotANumber("high".into()))
        );
        assert_eq!(
            holds("x / y > 1", json!({"x": 1, "y": 0})),
            Err(EvalError::Arithmetic)
        );
        // `false && x` does not read `x`.
        assert_eq!(holds("false && x > 1", json!({})), Ok(false));
    }

    #[test]
    fn refuses_what_is_not_a_condition_naming_it() {
        for (text, says) in [
            ("x = 1", "assignments"),
            ("x > 1; y > 2", "`;`"),
            ("x + 1", "gives a number"),
            ("\"a\" > 1", "needs a number"),
            ("(x > 1) + 2", "needs a number"),
            ("x && 5", "needs a true/false"),
            ("system(\"rm\")", "not a function"),
            ("x ^ 2 > 1", "only + - * /"),
            ("x >", "missing an operand"),
            ("x > (1", "cannot parse"),
            ("\"a\" == 1", "like with like"),
        ] {
            let e = Condition::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
