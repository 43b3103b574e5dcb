//! Typed parameters, declared in config by every pack that turns arguments into values (SQL
//! statements today; HTTP tools, commands and resource templates build on the same model).
//! `portcullis-packs` turns them into a JSON Schema and typed values.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};

/// One declared parameter: it becomes a property of the tool's input schema.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Argument name (A-Z, a-z, 0-9 and `_`; 1 to 64 characters).
    pub name: String,
    /// JSON type of the argument.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// What to pass.
    pub description: Option<String>,
    /// Whether the argument must be given. Defaults to true unless a `default` is set.
    pub required: Option<bool>,
    /// Value used when the argument is absent.
    pub default: Option<serde_json::Value>,
    /// Smallest value (`integer`, `number`), shortest length (`string`) or fewest items
    /// (`array`).
    pub min: Option<f64>,
    /// Largest value (`integer`, `number`), longest length (`string`) or most items
    /// (`array`).
    pub max: Option<f64>,
    /// The only values allowed.
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// Regular expression (ECMA 262) a `string` must match (for arrays: each item).
    pub pattern: Option<String>,
    /// Item type of an `array` (default `string`).
    pub items: Option<ParamType>,
    /// A format a `string` must have (checked, not just advertised): `date` (`2026-12-01`),
    /// `date-time`, `time`, `email`, `uri`, `uuid`, `ipv4` or `ipv6`.
    pub format: Option<String>,
    /// `path` parameters only: the extensions the file must have (`[".py"]`); empty: any.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Command placeholders only: let a value that starts with `-` through. Off, such values
    /// are refused where they stand alone as an argument, so they cannot become flags.
    #[serde(default)]
    pub allow_dash: bool,
    /// The value is a secret (a token, a password): the audit log, which keeps the
    /// arguments of tools that change data, shows it as `<redacted>`. Advertised as
    /// `writeOnly` in the tool's schema.
    #[serde(default)]
    pub secret: bool,
}

/// The string formats a parameter may require.
pub const FORMATS: [&str; 8] = [
    "date",
    "date-time",
    "time",
    "email",
    "uri",
    "uuid",
    "ipv4",
    "ipv6",
];

impl Param {
    /// Whether the argument must be given.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// Type of a declared parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Text.
    String,
    /// A whole number (64-bit).
    Integer,
    /// A floating-point number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list of values of the `items` type.
    Array,
    /// A path inside a files root (commands only): resolved through the root's jail, must
    /// exist, and is passed relative to the command's working directory.
    Path,
}

impl ParamType {
    /// The JSON Schema type name.
    pub fn json_type(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Path => "string",
        }
    }

    /// Whether `value` is of this type.
    pub fn fits(self, value: &serde_json::Value) -> bool {
        match self {
            Self::String | Self::Path => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::Array => value.is_array(),
        }
    }
}

/// Checks a list of parameters declared at `key` (`sql[0].statements[1]`): names, types,
/// bounds, defaults and enums; `reserved` names (such as `confirm`) may not be declared;
/// `path` parameters only where `paths` (the command pack).
pub(crate) fn validate_params(
    key: &str,
    params: &[Param],
    reserved: &[&str],
    paths: bool,
) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("parameter");
    for (k, param) in params.iter().enumerate() {
        let key = format!("{key}.params[{k}]");
        validate_param(&key, param)?;
        if !paths && (param.kind == ParamType::Path || param.items == Some(ParamType::Path)) {
            return Err(issue(
                format!("{key}.type"),
                "`path` parameters are for commands only",
            ));
        }
        if !param.extensions.is_empty() && param.kind != ParamType::Path {
            return Err(issue(
                format!("{key}.extensions"),
                "only `path` parameters have `extensions`",
            ));
        }
        if reserved.contains(&param.name.as_str()) {
            return Err(issue(
                format!("{key}.name"),
                format!("`{}` is reserved here", param.name),
            ));
        }
        names.check(format!("{key}.name"), param.name.as_str())?;
    }
    Ok(())
}

fn validate_param(key: &str, param: &Param) -> Result<(), Issue> {
    let ident_ok = !param.name.is_empty()
        && param.name.len() <= 64
        && param
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident_ok {
        return Err(issue(
            format!("{key}.name"),
            format!(
                "parameter name `{}` may use only A-Z, a-z, 0-9 and `_`",
                param.name
            ),
        ));
    }
    let kind = param.kind;
    let item = param.items.unwrap_or(ParamType::String);
    if param.items.is_some() && kind != ParamType::Array {
        return Err(issue(
            format!("{key}.items"),
            "only `array` parameters have `items`",
        ));
    }
    if item == ParamType::Array || item == ParamType::Path {
        return Err(issue(
            format!("{key}.items"),
            "arrays of arrays or of paths are not supported",
        ));
    }
    // What `pattern` and `format` apply to: the value, or for arrays each item.
    let element = if kind == ParamType::Array { item } else { kind };
    let textual = matches!(element, ParamType::String | ParamType::Path);
    if param.pattern.is_some() && !textual {
        return Err(issue(
            format!("{key}.pattern"),
            "only `string` parameters (or arrays of strings) have a `pattern`",
        ));
    }
    if let Some(format) = &param.format {
        if !textual {
            return Err(issue(
                format!("{key}.format"),
                "only `string` parameters (or arrays of strings) have a `format`",
            ));
        }
        if !FORMATS.contains(&format.as_str()) {
            return Err(issue(
                format!("{key}.format"),
                format!("`{format}` is not one of {}", FORMATS.join(", ")),
            ));
        }
    }
    if (param.min.is_some() || param.max.is_some()) && kind == ParamType::Boolean {
        return Err(issue(
            key.to_owned(),
            "`boolean` parameters have no `min`/`max`",
        ));
    }
    if let (Some(min), Some(max)) = (param.min, param.max)
        && min > max
    {
        return Err(issue(key.to_owned(), "`min` is larger than `max`"));
    }
    if param.required == Some(true) && param.default.is_some() {
        return Err(issue(
            key.to_owned(),
            "a required parameter cannot have a `default`",
        ));
    }
    if let Some(default) = &param.default
        && !kind.fits(default)
    {
        return Err(issue(
            format!("{key}.default"),
            format!("must be of type `{}`", kind.json_type()),
        ));
    }
    if let Some(allowed) = &param.allowed {
        if allowed.is_empty() {
            return Err(issue(format!("{key}.enum"), "must list at least one value"));
        }
        if !allowed.iter().all(|value| element.fits(value)) {
            return Err(issue(
                format!("{key}.enum"),
                "every value must be of the parameter's type (for arrays: the item type)",
            ));
        }
    }
    Ok(())
}
