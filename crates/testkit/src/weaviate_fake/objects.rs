//! Objects: the checks Weaviate runs on an object's properties against its class
//! (`usecases/objects/validation`), and vector distances.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::document::is_uuid;
use super::schema::lowercase_first;

/// An object's properties checked against `class` (as stored), with `null` members dropped and
/// names normalised, or Weaviate's message for the first property that does not fit.
pub(crate) fn check_properties(class: &Value, properties: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let class_name = class["class"].as_str().unwrap_or_default();
    let mut checked = Map::new();
    for (key, value) in properties {
        if value.is_null() {
            continue;
        }
        let name = lowercase_first(key);
        let property = class["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .ok_or_else(|| {
                format!(
                    "no such prop with name '{name}' found in class '{class_name}' in the schema. Check your schema \
                     files for which properties in this class are available"
                )
            })?;
        let data_type: Vec<&str> =
            property["dataType"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        check_value(&data_type, property, value).map_err(|(label, problem)| match label {
            Some(label) => format!("invalid {label} property '{name}' on class '{class_name}': {problem}"),
            None => problem,
        })?;
        checked.insert(name, value.clone());
    }
    Ok(checked)
}

/// Checks one value against a data type. The error carries the label Weaviate's message uses
/// ("text", "integer array", ...) and the problem.
fn check_value(data_type: &[&str], property: &Value, value: &Value) -> Result<(), (Option<&'static str>, String)> {
    let labelled = |label: &'static str, result: Result<String, String>| result.map(drop).map_err(|p| (Some(label), p));
    match data_type {
        ["text"] => labelled("text", string(value)),
        ["string"] => labelled("string", string(value)),
        ["uuid"] => labelled("uuid", string(value).and_then(|s| uuid(&s))),
        ["int"] => labelled("integer", integer(value)),
        ["number"] => labelled("number", number(value)),
        ["boolean"] => labelled("boolean", boolean(value)),
        ["date"] => labelled("date", date(value)),
        ["blob"] => labelled("blob", blob(value)),
        ["geoCoordinates"] => labelled("geoCoordinates", geo_coordinates(value)),
        ["phoneNumber"] => labelled("phoneNumber", phone_number(value)),
        ["text[]"] => labelled("text array", array(value, "a text array", string)),
        ["string[]"] => labelled("string array", array(value, "a string array", string)),
        ["int[]"] => labelled("integer array", array(value, "an integer array", integer)),
        ["number[]"] => labelled("number array", array(value, "a number array", number)),
        ["boolean[]"] => labelled("boolean array", array(value, "a boolean array", boolean)),
        ["date[]"] => labelled("date array", array(value, "a date array", date)),
        ["uuid[]"] => labelled("uuid array", array(value, "a uuid array", |v| string(v).and_then(|s| uuid(&s)))),
        ["object"] => labelled("object", nested(property, value).map(|()| String::new())),
        ["object[]"] => match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    nested(property, item)
                        .map_err(|p| (Some("object[]"), format!("invalid object '{i}' in array: {p}")))?;
                }
                Ok(())
            }
            other => Err((Some("object[]"), format!("not an object array, but {}", go_type(other)))),
        },
        _ => references(value).map_err(|p| (None, format!("invalid cref: {p}"))),
    }
}

/// An object property's value: each member must be one of the property's `nestedProperties`.
fn nested(property: &Value, value: &Value) -> Result<(), String> {
    let Value::Object(members) = value else {
        return Err(format!("object must be a map, but got: {}", go_type(value)));
    };
    for (key, member) in members {
        if member.is_null() {
            continue;
        }
        let nested = property["nestedProperties"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == key.as_str())
            .ok_or_else(|| format!("unknown property '{key}'"))?;
        let data_type: Vec<&str> =
            nested["dataType"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        check_value(&data_type, nested, member).map_err(|(_, problem)| format!("property '{key}': {problem}"))?;
    }
    Ok(())
}

fn references(value: &Value) -> Result<(), String> {
    let Value::Array(items) = value else {
        return Err(format!("invalid ref type. Needs to be []map, got {}", go_type(value)));
    };
    for item in items {
        match item.get("beacon").and_then(Value::as_str) {
            Some(beacon) if beacon.starts_with("weaviate://") => {}
            Some(beacon) => return Err(format!("invalid reference: {beacon:?} is not a weaviate:// beacon")),
            None => return Err("only direct references supported at the moment: 'beacon' is missing".into()),
        }
    }
    Ok(())
}

fn string(value: &Value) -> Result<String, String> {
    value.as_str().map(str::to_owned).ok_or_else(|| format!("not a string, but {}", go_type(value)))
}

fn uuid(text: &str) -> Result<String, String> {
    if is_uuid(text) { Ok(text.to_owned()) } else { Err(format!("invalid UUID format: {text}")) }
}

fn integer(value: &Value) -> Result<String, String> {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 => Ok(n.to_string()),
        _ => Err(format!("requires an integer, the given value is '{}'", go_value(value))),
    }
}

fn number(value: &Value) -> Result<String, String> {
    match value.as_f64() {
        Some(n) => Ok(n.to_string()),
        None => Err(format!("requires a float, the given value is '{}'", go_value(value))),
    }
}

fn boolean(value: &Value) -> Result<String, String> {
    value.as_bool().map(|b| b.to_string()).ok_or_else(|| format!("not a bool, but {}", go_type(value)))
}

/// An RFC 3339 date, checked with the same `date-time` format check the document's validators use.
fn date(value: &Value) -> Result<String, String> {
    static DATE_TIME: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let valid = DATE_TIME
        .get_or_init(|| {
            jsonschema::draft4::options()
                .should_validate_formats(true)
                .build(&json!({"type": "string", "format": "date-time"}))
                .ok()
        })
        .as_ref()
        .is_some_and(|validator| validator.is_valid(value));
    if valid {
        Ok(value.as_str().unwrap_or_default().to_owned())
    } else {
        Err(format!("requires a string with a RFC3339 formatted date, but the given value is '{}'", go_value(value)))
    }
}

/// Base64 as Weaviate's blob check accepts it: groups of four, padded.
fn blob(value: &Value) -> Result<String, String> {
    let text = value.as_str().ok_or_else(|| format!("not a blob base64 string, but {}", go_type(value)))?;
    let bytes = text.as_bytes();
    let body = text.trim_end_matches('=');
    let padding = bytes.len() - body.len();
    let valid = !bytes.is_empty()
        && bytes.len() % 4 == 0
        && padding <= 2
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if valid { Ok(text.to_owned()) } else { Err("not a valid blob base64 string".into()) }
}

fn geo_coordinates(value: &Value) -> Result<String, String> {
    let Value::Object(map) = value else {
        return Err(format!("geoCoordinates must be a map, but got: {}", go_type(value)));
    };
    for field in ["longitude", "latitude"] {
        match map.get(field) {
            None => return Err(format!("geoCoordinates is missing required field '{field}'")),
            Some(v) if !v.is_number() => {
                return Err(format!("invalid {field}: must be json.Number or float, but got {}", go_type(v)));
            }
            Some(_) => {}
        }
    }
    Ok(value.to_string())
}

fn phone_number(value: &Value) -> Result<String, String> {
    let Value::Object(map) = value else {
        return Err(format!("phoneNumber must be a map, but got: {}", go_type(value)));
    };
    match map.get("input") {
        None => Err("phoneNumber is missing required field 'input'".into()),
        Some(Value::String(_)) => Ok(value.to_string()),
        Some(_) => Err("phoneNumber.input must be a string".into()),
    }
}

fn array(value: &Value, what: &str, item: impl Fn(&Value) -> Result<String, String>) -> Result<String, String> {
    let Value::Array(items) = value else {
        return Err(format!("not {what}, but {}", go_type(value)));
    };
    match items.iter().find(|i| item(i).is_err()) {
        Some(_) => Err(format!("invalid {} value: {value}", what.trim_start_matches("a ").trim_start_matches("an "))),
        None => Ok(value.to_string()),
    }
}

/// The Go type a JSON value decodes to in Weaviate's handlers (numbers stay `json.Number`).
fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "json.Number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A JSON value as Go's `%v` prints it.
fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The distance between two vectors of equal length under `metric`, in float32 as Weaviate
/// computes it; `None` for an unknown metric.
pub(crate) fn distance(metric: &str, a: &[f32], b: &[f32]) -> Option<f32> {
    let pairs = a.iter().zip(b);
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    Some(match metric {
        "cosine" => {
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let (na, nb) = (norm(a), norm(b));
            if na == 0.0 || nb == 0.0 { 1.0 } else { 1.0 - dot / (na * nb) }
        }
        "dot" => -dot,
        "l2-squared" => pairs.map(|(x, y)| (x - y) * (x - y)).sum(),
        "manhattan" => pairs.map(|(x, y)| (x - y).abs()).sum(),
        "hamming" => pairs.filter(|(x, y)| x != y).count() as f32,
        _ => return None,
    })
}

/// A float32 as JSON the way Go encodes one: the shortest decimal that reads back as the same
/// float32 (0.1, not 0.10000000149011612).
pub(crate) fn float32_json(x: f32) -> Value {
    x.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
}

/// A JSON vector as float32s, if it is an array of numbers.
pub(crate) fn vector_of(value: &Value) -> Option<Vec<f32>> {
    value.as_array()?.iter().map(|x| x.as_f64().map(|x| x as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class() -> Value {
        json!({
            "class": "Doc",
            "properties": [
                {"name": "title", "dataType": ["text"]},
                {"name": "count", "dataType": ["int"]},
                {"name": "tags", "dataType": ["text[]"]},
                {"name": "image", "dataType": ["blob"]},
                {"name": "published", "dataType": ["date"]},
                {"name": "meta", "dataType": ["object"], "nestedProperties": [{"name": "a", "dataType": ["int"]}]},
            ]
        })
    }

    fn check(properties: Value) -> Result<Map<String, Value>, String> {
        check_properties(&class(), properties.as_object().unwrap())
    }

    #[test]
    fn property_values_are_checked_against_data_types() {
        let ok = check(json!({"Title": "x", "count": 3.0, "tags": ["a"], "image": "aGk=",
            "published": "2024-01-02T03:04:05Z", "meta": {"a": 1}, "ignored": null}))
        .unwrap();
        assert!(ok.contains_key("title") && !ok.contains_key("ignored"));
        assert_eq!(
            check(json!({"title": 5})).unwrap_err(),
            "invalid text property 'title' on class 'Doc': not a string, but json.Number"
        );
        assert!(check(json!({"count": 1.5})).unwrap_err().contains("requires an integer"));
        assert!(check(json!({"tags": ["a", 1]})).unwrap_err().contains("invalid text array property"));
        assert!(check(json!({"image": "not base64!"})).unwrap_err().contains("not a valid blob base64 string"));
        assert!(check(json!({"published": "yesterday"})).unwrap_err().contains("RFC3339"));
        assert!(check(json!({"meta": {"b": 1}})).unwrap_err().contains("unknown property 'b'"));
        assert!(check(json!({"author": "x"})).unwrap_err().starts_with("no such prop with name 'author'"));
    }

    #[test]
    fn distances_follow_weaviate() {
        let (a, b) = ([1.0, 0.0], [0.0, 1.0]);
        assert_eq!(distance("cosine", &a, &b), Some(1.0));
        assert_eq!(distance("cosine", &a, &a), Some(0.0));
        assert_eq!(distance("dot", &[1.0, 2.0], &[3.0, 4.0]), Some(-11.0));
        assert_eq!(distance("l2-squared", &[1.0, 2.0], &[3.0, 4.0]), Some(8.0));
        assert_eq!(distance("manhattan", &[1.0, 2.0], &[3.0, 5.0]), Some(5.0));
        assert_eq!(distance("hamming", &[1.0, 2.0], &[1.0, 5.0]), Some(1.0));
        assert_eq!(float32_json(0.1), json!(0.1));
    }
}
