//! The part of Weaviate's GraphQL API the fake answers: `Get` with `nearVector` and `limit`, and
//! `Aggregate { meta { count } }`. Queries are parsed by a small recursive-descent parser of
//! GraphQL's query syntax (commas and whitespace are insignificant, `#` starts a comment);
//! anything outside that subset is answered with a GraphQL error, with status 200 as Weaviate
//! does.

use serde_json::{Map, Value, json};

use super::StoredClass;
use super::objects::{distance, float32_json};

/// Objects `Get` returns when the query gives no `limit` (Weaviate's `QUERY_DEFAULTS_LIMIT`).
const DEFAULT_LIMIT: usize = 10;

/// The GraphQL response for `query` over `classes`.
pub(crate) fn execute(query: &str, classes: &[StoredClass]) -> Value {
    let result = Parser::new(query).document().and_then(|fields| {
        let mut data = Map::new();
        for field in &fields {
            let value = match field.name.as_str() {
                "Get" => get(field, classes)?,
                "Aggregate" => aggregate(field, classes)?,
                other => return Err(field.error(format!("Cannot query field \"{other}\" on type \"WeaviateObj\"."))),
            };
            data.insert(field.key().to_owned(), value);
        }
        Ok(data)
    });
    match result {
        Ok(data) => json!({"data": data}),
        Err(error) => json!({"errors": [error.to_json()]}),
    }
}

fn get(field: &Field, classes: &[StoredClass]) -> Result<Value, QueryError> {
    no_arguments(field)?;
    let mut answer = Map::new();
    for selection in &field.selection {
        let class = find_class(selection, classes, "GetObjectsObj")?;
        answer.insert(selection.key().to_owned(), Value::Array(get_class(selection, class)?));
    }
    Ok(Value::Object(answer))
}

fn get_class(field: &Field, class: &StoredClass) -> Result<Vec<Value>, QueryError> {
    let class_name = class.name();
    let mut near: Option<NearVector> = None;
    let mut limit: Option<usize> = None;
    for (name, value) in &field.arguments {
        match (name.as_str(), value) {
            ("limit", GqlValue::Int(n)) if *n >= 0 => limit = Some(*n as usize),
            ("limit", other) => {
                return Err(field.error(format!("Argument \"limit\" has invalid value {other}. Expected type \"Int\"")));
            }
            ("nearVector", GqlValue::Object(members)) => near = Some(near_vector(field, members)?),
            ("nearVector", other) => {
                return Err(field.error(format!(
                    "Argument \"nearVector\" has invalid value {other}. Expected \"NearVectorInpObj\", found not an object."
                )));
            }
            (other, _) => {
                return Err(field.error(format!("the fake Weaviate does not support the argument \"{other}\" of Get")));
            }
        }
    }

    let metric = class.definition["vectorIndexConfig"]["distance"].as_str().unwrap_or("cosine").to_owned();
    let wants_certainty = field.selection.iter().filter(|f| f.name == "_additional").any(|f| f.selects("certainty"));
    let near_certainty = near.as_ref().is_some_and(|n| n.min_certainty.is_some());
    if (wants_certainty || near_certainty) && metric != "cosine" {
        return Err(field.error(format!(
            "can't compute and return certainty when vector index is configured with {metric} distance"
        )));
    }

    // (object index, distance) in answer order.
    let mut hits: Vec<(usize, Option<f32>)> = Vec::new();
    match &near {
        None => {
            hits = (0..class.objects.len()).map(|i| (i, None)).collect();
            hits.truncate(limit.unwrap_or(DEFAULT_LIMIT));
        }
        Some(NearVector { vector, max_distance, min_certainty }) => {
            if let Some(dimensions) = class.dimensions
                && dimensions != vector.len()
            {
                return Err(field.error(format!(
                    "explorer: get class: vector search: knn search: vector lengths don't match: {} vs {dimensions}",
                    vector.len()
                )));
            }
            for (i, object) in class.objects.iter().enumerate() {
                let Some(stored) = &object.vector else { continue };
                let Some(d) = distance(&metric, vector, stored) else {
                    return Err(field.error(format!("unsupported distance metric {metric:?}")));
                };
                let within_distance = max_distance.is_none_or(|max| f64::from(d) <= max);
                let within_certainty = min_certainty.is_none_or(|min| f64::from(1.0 - d / 2.0) >= min);
                if within_distance && within_certainty {
                    hits.push((i, Some(d)));
                }
            }
            // Stable: equal distances keep insertion order.
            hits.sort_by(|a, b| a.1.unwrap_or(0.0).total_cmp(&b.1.unwrap_or(0.0)));
            let unbounded = max_distance.is_some() || min_certainty.is_some();
            if let Some(limit) = limit.or(if unbounded { None } else { Some(DEFAULT_LIMIT) }) {
                hits.truncate(limit);
            }
        }
    }

    let mut answer = Vec::new();
    for (index, d) in hits {
        let object = &class.objects[index];
        let mut item = Map::new();
        for selection in &field.selection {
            if selection.name == "_additional" {
                let mut additional = Map::new();
                for wanted in &selection.selection {
                    let value = match wanted.name.as_str() {
                        "id" => Value::String(object.id.clone()),
                        "distance" => d.map(float32_json).unwrap_or(Value::Null),
                        "certainty" => d.map(|d| float32_json(1.0 - d / 2.0)).unwrap_or(Value::Null),
                        "vector" => object
                            .vector
                            .as_ref()
                            .map(|v| Value::Array(v.iter().copied().map(float32_json).collect()))
                            .unwrap_or(Value::Null),
                        other => {
                            return Err(wanted.error(format!(
                                "the fake Weaviate does not support _additional {{ {other} }} (it answers id, distance, \
                                 certainty and vector)"
                            )));
                        }
                    };
                    additional.insert(wanted.key().to_owned(), value);
                }
                item.insert(selection.key().to_owned(), Value::Object(additional));
            } else if class.property(&selection.name).is_some() && selection.selection.is_empty() {
                item.insert(
                    selection.key().to_owned(),
                    object.properties.get(&selection.name).cloned().unwrap_or(Value::Null),
                );
            } else {
                return Err(
                    selection.error(format!("Cannot query field \"{}\" on type \"{class_name}\".", selection.name))
                );
            }
        }
        answer.push(Value::Object(item));
    }
    Ok(answer)
}

/// The arguments of `nearVector`.
struct NearVector {
    vector: Vec<f32>,
    /// Only hits at most this far.
    max_distance: Option<f64>,
    /// Only hits at least this certain (cosine only).
    min_certainty: Option<f64>,
}

fn near_vector(field: &Field, members: &[(String, GqlValue)]) -> Result<NearVector, QueryError> {
    let mut vector = None;
    let (mut max_distance, mut min_certainty) = (None, None);
    for (name, value) in members {
        match (name.as_str(), value) {
            ("vector", GqlValue::List(items)) => {
                let numbers: Option<Vec<f32>> = items.iter().map(|i| i.as_f64().map(|x| x as f32)).collect();
                vector =
                    Some(numbers.ok_or_else(|| field.error("nearVector: vector must be a list of numbers".into()))?);
            }
            ("distance", value) if value.as_f64().is_some() => max_distance = value.as_f64(),
            ("certainty", value) if value.as_f64().is_some() => min_certainty = value.as_f64(),
            (other, value) => {
                return Err(field.error(format!(
                    "the fake Weaviate does not support nearVector {{ {other}: {value} }} (it takes vector, distance \
                     and certainty)"
                )));
            }
        }
    }
    if max_distance.is_some() && min_certainty.is_some() {
        return Err(field.error("nearVector cannot provide both distance and certainty".into()));
    }
    let vector = vector.ok_or_else(|| {
        field.error(
            "Argument \"nearVector\" has invalid value. In field \"vector\": Expected \"[Float]!\", found null.".into(),
        )
    })?;
    Ok(NearVector { vector, max_distance, min_certainty })
}

fn aggregate(field: &Field, classes: &[StoredClass]) -> Result<Value, QueryError> {
    no_arguments(field)?;
    let mut answer = Map::new();
    for selection in &field.selection {
        let class = find_class(selection, classes, "AggregateObjectsObj")?;
        no_arguments(selection)?;
        let mut item = Map::new();
        for wanted in &selection.selection {
            let only_count = wanted.name == "meta" && wanted.selection.iter().all(|f| f.name == "count");
            if !only_count || wanted.selection.is_empty() {
                return Err(wanted.error("the fake Weaviate answers only meta { count } in Aggregate".into()));
            }
            let counts: Map<String, Value> =
                wanted.selection.iter().map(|f| (f.key().to_owned(), json!(class.objects.len()))).collect();
            item.insert(wanted.key().to_owned(), Value::Object(counts));
        }
        answer.insert(selection.key().to_owned(), json!([item]));
    }
    Ok(Value::Object(answer))
}

fn find_class<'a>(field: &Field, classes: &'a [StoredClass], type_name: &str) -> Result<&'a StoredClass, QueryError> {
    classes
        .iter()
        .find(|c| c.name() == field.name)
        .ok_or_else(|| field.error(format!("Cannot query field \"{}\" on type \"{type_name}\".", field.name)))
}

fn no_arguments(field: &Field) -> Result<(), QueryError> {
    match field.arguments.first() {
        None => Ok(()),
        Some((name, _)) => Err(field.error(format!("the fake Weaviate does not support the argument \"{name}\" here"))),
    }
}

/// A GraphQL error with where in the query it is.
#[derive(Debug)]
struct QueryError {
    message: String,
    line: usize,
    column: usize,
}

impl QueryError {
    fn to_json(&self) -> Value {
        json!({"message": self.message, "locations": [{"line": self.line, "column": self.column}]})
    }
}

/// A field of a selection set.
#[derive(Debug)]
struct Field {
    alias: Option<String>,
    name: String,
    arguments: Vec<(String, GqlValue)>,
    selection: Vec<Field>,
    line: usize,
    column: usize,
}

impl Field {
    /// The key of this field in the answer.
    fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    fn selects(&self, name: &str) -> bool {
        self.selection.iter().any(|f| f.name == name)
    }

    fn error(&self, message: String) -> QueryError {
        QueryError { message, line: self.line, column: self.column }
    }
}

/// An argument value.
#[derive(Debug, Clone, PartialEq)]
enum GqlValue {
    Int(i64),
    Float(f64),
    String(String),
    Bool(bool),
    Null,
    Enum(String),
    List(Vec<GqlValue>),
    Object(Vec<(String, GqlValue)>),
}

impl GqlValue {
    fn as_f64(&self) -> Option<f64> {
        match self {
            GqlValue::Int(n) => Some(*n as f64),
            GqlValue::Float(x) => Some(*x),
            _ => None,
        }
    }
}

impl std::fmt::Display for GqlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GqlValue::Int(n) => write!(f, "{n}"),
            GqlValue::Float(x) => write!(f, "{x}"),
            GqlValue::String(s) => write!(f, "{s:?}"),
            GqlValue::Bool(b) => write!(f, "{b}"),
            GqlValue::Null => write!(f, "null"),
            GqlValue::Enum(e) => write!(f, "{e}"),
            GqlValue::List(items) => {
                let items: Vec<String> = items.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            GqlValue::Object(members) => {
                let members: Vec<String> = members.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                write!(f, "{{{}}}", members.join(", "))
            }
        }
    }
}

/// A recursive-descent parser of GraphQL's executable syntax, without fragments, variables and
/// directives.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser { chars: text.chars().collect(), pos: 0 }
    }

    /// `query Name? { ... }` or `{ ... }`: the top-level fields.
    fn document(&mut self) -> Result<Vec<Field>, QueryError> {
        self.skip_ignored();
        if self.peek().is_some_and(is_name_start) {
            let keyword = self.name()?;
            if keyword != "query" {
                return Err(self.error(format!("Unexpected Name \"{keyword}\"")));
            }
            self.skip_ignored();
            if self.peek().is_some_and(is_name_start) {
                self.name()?;
                self.skip_ignored();
            }
            if self.peek() == Some('(') {
                return Err(self.error("the fake Weaviate does not support query variables".into()));
            }
        }
        let fields = self.selection_set()?;
        self.skip_ignored();
        match self.peek() {
            None => Ok(fields),
            Some(c) => Err(self.error(format!("Unexpected {c:?}"))),
        }
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, QueryError> {
        self.expect('{')?;
        let mut fields = Vec::new();
        loop {
            self.skip_ignored();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    if fields.is_empty() {
                        return Err(self.error("Expected Name, found }".into()));
                    }
                    return Ok(fields);
                }
                Some('.') => return Err(self.error("the fake Weaviate does not support fragments".into())),
                Some('@') => return Err(self.error("the fake Weaviate does not support directives".into())),
                _ => fields.push(self.field()?),
            }
        }
    }

    fn field(&mut self) -> Result<Field, QueryError> {
        let (line, column) = self.location();
        let mut name = self.name()?;
        let mut alias = None;
        self.skip_ignored();
        if self.peek() == Some(':') {
            self.pos += 1;
            self.skip_ignored();
            alias = Some(std::mem::replace(&mut name, self.name()?));
            self.skip_ignored();
        }
        let mut arguments = Vec::new();
        if self.peek() == Some('(') {
            self.pos += 1;
            loop {
                self.skip_ignored();
                if self.peek() == Some(')') {
                    self.pos += 1;
                    break;
                }
                let argument = self.name()?;
                self.skip_ignored();
                self.expect(':')?;
                arguments.push((argument, self.value()?));
            }
            self.skip_ignored();
        }
        let selection = if self.peek() == Some('{') { self.selection_set()? } else { Vec::new() };
        Ok(Field { alias, name, arguments, selection, line, column })
    }

    fn value(&mut self) -> Result<GqlValue, QueryError> {
        self.skip_ignored();
        match self.peek() {
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        return Ok(GqlValue::List(items));
                    }
                    items.push(self.value()?);
                }
            }
            Some('{') => {
                self.pos += 1;
                let mut members = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(GqlValue::Object(members));
                    }
                    let name = self.name()?;
                    self.skip_ignored();
                    self.expect(':')?;
                    members.push((name, self.value()?));
                }
            }
            Some('"') => self.string(),
            Some('$') => Err(self.error("the fake Weaviate does not support query variables".into())),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) if is_name_start(c) => Ok(match self.name()?.as_str() {
                "true" => GqlValue::Bool(true),
                "false" => GqlValue::Bool(false),
                "null" => GqlValue::Null,
                other => GqlValue::Enum(other.to_owned()),
            }),
            Some(c) => Err(self.error(format!("Unexpected {c:?}"))),
            None => Err(self.error("Unexpected <EOF>".into())),
        }
    }

    fn number(&mut self) -> Result<GqlValue, QueryError> {
        let start = self.pos;
        let mut float = false;
        while let Some(c) = self.peek() {
            match c {
                '0'..='9' | '-' | '+' => {}
                '.' | 'e' | 'E' => float = true,
                _ => break,
            }
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let parsed = if float { text.parse().ok().map(GqlValue::Float) } else { text.parse().ok().map(GqlValue::Int) };
        parsed.ok_or_else(|| self.error(format!("Invalid number {text:?}")))
    }

    fn string(&mut self) -> Result<GqlValue, QueryError> {
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("Unterminated string".into())),
                Some('"') => {
                    self.pos += 1;
                    return Ok(GqlValue::String(text));
                }
                Some('\\') => {
                    self.pos += 1;
                    let escaped = match self.peek() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some(c @ ('"' | '\\' | '/')) => c,
                        other => return Err(self.error(format!("Invalid character escape sequence {other:?}"))),
                    };
                    text.push(escaped);
                    self.pos += 1;
                }
                Some(c) => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn name(&mut self) -> Result<String, QueryError> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            let found = self.peek().map(|c| format!("{c:?}")).unwrap_or_else(|| "<EOF>".into());
            return Err(self.error(format!("Expected Name, found {found}")));
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn expect(&mut self, wanted: char) -> Result<(), QueryError> {
        self.skip_ignored();
        match self.peek() {
            Some(c) if c == wanted => {
                self.pos += 1;
                Ok(())
            }
            Some(c) => Err(self.error(format!("Expected {wanted:?}, found {c:?}"))),
            None => Err(self.error(format!("Expected {wanted:?}, found <EOF>"))),
        }
    }

    /// Skips whitespace, commas and comments, which GraphQL ignores.
    fn skip_ignored(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else if c.is_whitespace() || c == ',' || c == '\u{feff}' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn location(&self) -> (usize, usize) {
        let before = &self.chars[..self.pos.min(self.chars.len())];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
        (line, column)
    }

    fn error(&self, problem: String) -> QueryError {
        let (line, column) = self.location();
        QueryError { message: format!("Syntax Error GraphQL request ({line}:{column}) {problem}"), line, column }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_query_shapes_with_any_spacing() {
        let fields = Parser::new("{Get{Doc(nearVector:{vector:[1,-0.5,2e-1]} limit:3){_additional{id distance}}}}")
            .document()
            .unwrap();
        let doc = &fields[0].selection[0];
        assert_eq!(doc.name, "Doc");
        assert_eq!(doc.arguments[1], ("limit".to_owned(), GqlValue::Int(3)));
        let GqlValue::Object(near) = &doc.arguments[0].1 else { panic!("{:?}", doc.arguments) };
        assert_eq!(near[0].1, GqlValue::List(vec![GqlValue::Int(1), GqlValue::Float(-0.5), GqlValue::Float(0.2)]));
        let spaced = "query {\n  Get {\n    Doc(\n      nearVector: { vector: [1, -0.5, 0.2] },\n      limit: 3,\n    ) \
                      {\n      _additional { id, distance }\n    }\n  }\n}  # done\n";
        assert_eq!(Parser::new(spaced).document().unwrap()[0].selection[0].arguments.len(), 2);
        let aggregate = Parser::new("{ Aggregate { Doc { meta { count } } } }").document().unwrap();
        assert_eq!(aggregate[0].selection[0].selection[0].selection[0].name, "count");
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let error = Parser::new("{ Get { Doc(limit: ) { x } }").document().unwrap_err();
        assert!(error.message.starts_with("Syntax Error GraphQL request (1:"), "{}", error.message);
        assert!(Parser::new("{ Get { Doc { x } } } extra").document().is_err());
        assert!(Parser::new("{ }").document().is_err());
    }
}
