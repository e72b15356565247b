//! The OpenAPI v2 document in protobuf (asked for as `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`,
//! served as `….spec.v2.v1.0+protobuf`), as kube-openapi serves it next to the JSON: gnostic's `openapi.v2.Document` compiled from the JSON document.
//! kubectl asks `/openapi/v2` for nothing else (`explain --output=plaintext-openapiv2`, and the schema check of
//! `create -f` that finds no kind before it says "no matches for kind").
//!
//! The messages are gnostic's `OpenAPIv2.proto` (field numbers as there), written out for prost; only what a
//! Kubernetes document holds is converted. Values gnostic keeps as `Any` (defaults, enums, examples, `x-`
//! extensions) carry their YAML text; JSON is YAML, and the JSON text is what they get here.
//!
//! **OpenAPI** (v2 JSON → **protobuf**) → serve.

use prost::Message;
use serde_json::{Map, Value};

/// The media type clients ask for (kubectl's `Accept`); `@` is no token character, so Go's `mime` cannot parse it.
pub const REQUESTED_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The media type the document is served as (and may be asked for by), as current kube-openapi does.
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The protobuf encoding of a Swagger 2.0 JSON document.
pub fn encode(doc: &Value) -> Vec<u8> {
    document(doc).encode_to_vec()
}

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(string, tag = "3")]
    host: String,
    #[prost(string, tag = "4")]
    base_path: String,
    #[prost(string, repeated, tag = "5")]
    schemes: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    consumes: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    produces: Vec<String>,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    security_definitions: Option<SecurityDefinitions>,
    #[prost(message, repeated, tag = "16")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(message, repeated, tag = "7")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
struct Paths {
    #[prost(message, repeated, tag = "1")]
    vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedPathItem {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
struct PathItem {
    #[prost(string, tag = "1")]
    r#ref: String,
    #[prost(message, optional, tag = "2")]
    get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct Operation {
    #[prost(string, repeated, tag = "1")]
    tags: Vec<String>,
    #[prost(string, tag = "2")]
    summary: String,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "5")]
    operation_id: String,
    #[prost(string, repeated, tag = "6")]
    produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    deprecated: bool,
    #[prost(message, repeated, tag = "12")]
    security: Vec<SecurityRequirement>,
    #[prost(message, repeated, tag = "13")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
    oneof: Option<parameters_item::Oneof>,
}

mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Oneof {
        #[prost(message, boxed, tag = "1")]
        Parameter(Box<super::Parameter>),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, Message)]
struct JsonReference {
    #[prost(string, tag = "1")]
    r#ref: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, Message)]
struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    oneof: Option<parameter::Oneof>,
}

mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(super::BodyParameter),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, Message)]
struct BodyParameter {
    #[prost(string, tag = "1")]
    description: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    r#in: String,
    #[prost(bool, tag = "4")]
    required: bool,
    #[prost(message, optional, tag = "5")]
    schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "1, 3, 4")]
    oneof: Option<non_body_parameter::Oneof>,
}

mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Oneof {
        #[prost(message, tag = "1")]
        Header(super::HeaderParameterSubSchema),
        #[prost(message, tag = "3")]
        Query(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        Path(super::PathParameterSubSchema),
    }
}

/// The fields header, query and path parameters share, at their own field numbers (`allowEmptyValue` is 5 in a
/// query parameter and absent from the others, which shifts everything after it by one).
macro_rules! simple_parameter {
    ($name:ident, $($allow_empty:literal,)? [$ty:literal, $format:literal, $items:literal, $collection:literal,
      $default:literal, $maximum:literal, $minimum:literal, $max_length:literal, $min_length:literal,
      $pattern:literal, $unique:literal, $enum:literal, $ext:literal]) => {
        #[derive(Clone, PartialEq, Message)]
        struct $name {
            #[prost(bool, tag = "1")]
            required: bool,
            #[prost(string, tag = "2")]
            r#in: String,
            #[prost(string, tag = "3")]
            description: String,
            #[prost(string, tag = "4")]
            name: String,
            $(
                #[prost(bool, tag = $allow_empty)]
                allow_empty_value: bool,
            )?
            #[prost(string, tag = $ty)]
            r#type: String,
            #[prost(string, tag = $format)]
            format: String,
            #[prost(message, optional, tag = $items)]
            items: Option<PrimitivesItems>,
            #[prost(string, tag = $collection)]
            collection_format: String,
            #[prost(message, optional, tag = $default)]
            default: Option<Any>,
            #[prost(double, tag = $maximum)]
            maximum: f64,
            #[prost(double, tag = $minimum)]
            minimum: f64,
            #[prost(int64, tag = $max_length)]
            max_length: i64,
            #[prost(int64, tag = $min_length)]
            min_length: i64,
            #[prost(string, tag = $pattern)]
            pattern: String,
            #[prost(bool, tag = $unique)]
            unique_items: bool,
            #[prost(message, repeated, tag = $enum)]
            r#enum: Vec<Any>,
            #[prost(message, repeated, tag = $ext)]
            vendor_extension: Vec<NamedAny>,
        }

        impl $name {
            fn from_json(v: &Value) -> Self {
                Self {
                    required: flag(v, "required"),
                    r#in: text(v, "in"),
                    description: text(v, "description"),
                    name: text(v, "name"),
                    $(allow_empty_value: { let _ = $allow_empty; flag(v, "allowEmptyValue") },)?
                    r#type: text(v, "type"),
                    format: text(v, "format"),
                    items: v.get("items").map(primitives_items),
                    collection_format: text(v, "collectionFormat"),
                    default: v.get("default").map(any),
                    maximum: number(v, "maximum"),
                    minimum: number(v, "minimum"),
                    max_length: integer(v, "maxLength"),
                    min_length: integer(v, "minLength"),
                    pattern: text(v, "pattern"),
                    unique_items: flag(v, "uniqueItems"),
                    r#enum: anys(v, "enum"),
                    vendor_extension: extensions(v),
                }
            }
        }
    };
}

simple_parameter!(HeaderParameterSubSchema, ["5", "6", "7", "8", "9", "10", "12", "14", "15", "16", "19", "20", "22"]);
simple_parameter!(
    QueryParameterSubSchema,
    "5",
    ["6", "7", "8", "9", "10", "11", "13", "15", "16", "17", "20", "21", "23"]
);
simple_parameter!(PathParameterSubSchema, ["5", "6", "7", "8", "9", "10", "12", "14", "15", "16", "19", "20", "22"]);

#[derive(Clone, PartialEq, Message)]
struct PrimitivesItems {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(message, optional, boxed, tag = "3")]
    items: Option<Box<PrimitivesItems>>,
    #[prost(string, tag = "4")]
    collection_format: String,
    #[prost(message, optional, tag = "5")]
    default: Option<Any>,
    #[prost(message, repeated, tag = "16")]
    r#enum: Vec<Any>,
    #[prost(message, repeated, tag = "18")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct Responses {
    #[prost(message, repeated, tag = "1")]
    response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedResponseValue {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
    oneof: Option<response_value::Oneof>,
}

mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Oneof {
        #[prost(message, boxed, tag = "1")]
        Response(Box<super::Response>),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, Message)]
struct Response {
    #[prost(string, tag = "1")]
    description: String,
    #[prost(message, optional, tag = "2")]
    schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    r#ref: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, tag = "3")]
    title: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(message, optional, tag = "5")]
    default: Option<Any>,
    #[prost(double, tag = "6")]
    multiple_of: f64,
    #[prost(double, tag = "7")]
    maximum: f64,
    #[prost(bool, tag = "8")]
    exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    minimum: f64,
    #[prost(bool, tag = "10")]
    exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    max_length: i64,
    #[prost(int64, tag = "12")]
    min_length: i64,
    #[prost(string, tag = "13")]
    pattern: String,
    #[prost(int64, tag = "14")]
    max_items: i64,
    #[prost(int64, tag = "15")]
    min_items: i64,
    #[prost(bool, tag = "16")]
    unique_items: bool,
    #[prost(int64, tag = "17")]
    max_properties: i64,
    #[prost(int64, tag = "18")]
    min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    read_only: bool,
    #[prost(message, optional, tag = "30")]
    example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    oneof: Option<additional_properties_item::Oneof>,
}

mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Oneof {
        #[prost(message, boxed, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedStringArray {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<StringArray>,
}

#[derive(Clone, PartialEq, Message)]
struct StringArray {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
struct SecurityDefinitionsItem {
    /// Only `apiKey` (2) is used by Kubernetes documents.
    #[prost(message, optional, tag = "2")]
    api_key_security: Option<ApiKeySecurity>,
}

#[derive(Clone, PartialEq, Message)]
struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    r#in: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(message, repeated, tag = "5")]
    vendor_extension: Vec<NamedAny>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn texts(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn number(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn integer(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn entries<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    v.get(key).and_then(Value::as_object).into_iter().flatten()
}

/// A value gnostic keeps as `Any`: its YAML text (here JSON, which YAML parsers read alike).
fn any(v: &Value) -> Any {
    Any { yaml: format!("{v}\n") }
}

fn anys(v: &Value, key: &str) -> Vec<Any> {
    v.get(key).and_then(Value::as_array).map(|a| a.iter().map(any).collect()).unwrap_or_default()
}

/// The `x-…` keys of an object, in order.
fn extensions(v: &Value) -> Vec<NamedAny> {
    let empty = Map::new();
    let map = v.as_object().unwrap_or(&empty);
    map.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny { name: k.clone(), value: Some(any(v)) })
        .collect()
}

fn document(v: &Value) -> Document {
    Document {
        swagger: text(v, "swagger"),
        info: v.get("info").map(|i| Info {
            title: text(i, "title"),
            version: text(i, "version"),
            description: text(i, "description"),
            vendor_extension: extensions(i),
        }),
        host: text(v, "host"),
        base_path: text(v, "basePath"),
        schemes: texts(v, "schemes"),
        consumes: texts(v, "consumes"),
        produces: texts(v, "produces"),
        paths: v.get("paths").map(|p| Paths {
            vendor_extension: extensions(p),
            path: entries(v, "paths")
                .filter(|(k, _)| k.starts_with('/'))
                .map(|(k, item)| NamedPathItem { name: k.clone(), value: Some(path_item(item)) })
                .collect(),
        }),
        definitions: v
            .get("definitions")
            .map(|_| Definitions { additional_properties: named_schemas(v, "definitions") }),
        security: v.get("security").and_then(Value::as_array).into_iter().flatten().map(security_requirement).collect(),
        security_definitions: v.get("securityDefinitions").map(|_| SecurityDefinitions {
            additional_properties: entries(v, "securityDefinitions")
                .map(|(k, d)| NamedSecurityDefinitionsItem {
                    name: k.clone(),
                    value: Some(SecurityDefinitionsItem {
                        api_key_security: (text(d, "type") == "apiKey").then(|| ApiKeySecurity {
                            r#type: text(d, "type"),
                            name: text(d, "name"),
                            r#in: text(d, "in"),
                            description: text(d, "description"),
                            vendor_extension: extensions(d),
                        }),
                    }),
                })
                .collect(),
        }),
        vendor_extension: extensions(v),
    }
}

fn security_requirement(v: &Value) -> SecurityRequirement {
    SecurityRequirement {
        additional_properties: v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, scopes)| NamedStringArray {
                name: k.clone(),
                value: Some(StringArray {
                    value: scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                }),
            })
            .collect(),
    }
}

fn path_item(v: &Value) -> PathItem {
    let op = |k: &str| v.get(k).map(operation);
    PathItem {
        r#ref: text(v, "$ref"),
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        options: op("options"),
        head: op("head"),
        patch: op("patch"),
        parameters: parameters(v),
        vendor_extension: extensions(v),
    }
}

fn operation(v: &Value) -> Operation {
    Operation {
        tags: texts(v, "tags"),
        summary: text(v, "summary"),
        description: text(v, "description"),
        operation_id: text(v, "operationId"),
        produces: texts(v, "produces"),
        consumes: texts(v, "consumes"),
        parameters: parameters(v),
        responses: v.get("responses").map(|r| Responses {
            response_code: r
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !k.starts_with("x-"))
                .map(|(k, resp)| NamedResponseValue { name: k.clone(), value: Some(response_value(resp)) })
                .collect(),
            vendor_extension: extensions(r),
        }),
        schemes: texts(v, "schemes"),
        deprecated: flag(v, "deprecated"),
        security: v.get("security").and_then(Value::as_array).into_iter().flatten().map(security_requirement).collect(),
        vendor_extension: extensions(v),
    }
}

fn parameters(v: &Value) -> Vec<ParametersItem> {
    let items = v.get("parameters").and_then(Value::as_array).into_iter().flatten();
    items
        .map(|p| {
            let oneof = match p.get("$ref") {
                Some(_) => parameters_item::Oneof::JsonReference(json_reference(p)),
                None => parameters_item::Oneof::Parameter(Box::new(parameter(p))),
            };
            ParametersItem { oneof: Some(oneof) }
        })
        .collect()
}

fn json_reference(v: &Value) -> JsonReference {
    JsonReference { r#ref: text(v, "$ref"), description: text(v, "description") }
}

fn parameter(v: &Value) -> Parameter {
    let non_body = |o| parameter::Oneof::NonBodyParameter(NonBodyParameter { oneof: Some(o) });
    let oneof = match v.get("in").and_then(Value::as_str).unwrap_or_default() {
        "body" => parameter::Oneof::BodyParameter(BodyParameter {
            description: text(v, "description"),
            name: text(v, "name"),
            r#in: text(v, "in"),
            required: flag(v, "required"),
            schema: v.get("schema").map(schema),
            vendor_extension: extensions(v),
        }),
        "header" => non_body(non_body_parameter::Oneof::Header(HeaderParameterSubSchema::from_json(v))),
        "path" => non_body(non_body_parameter::Oneof::Path(PathParameterSubSchema::from_json(v))),
        _ => non_body(non_body_parameter::Oneof::Query(QueryParameterSubSchema::from_json(v))),
    };
    Parameter { oneof: Some(oneof) }
}

fn primitives_items(v: &Value) -> PrimitivesItems {
    PrimitivesItems {
        r#type: text(v, "type"),
        format: text(v, "format"),
        items: v.get("items").map(|i| Box::new(primitives_items(i))),
        collection_format: text(v, "collectionFormat"),
        default: v.get("default").map(any),
        r#enum: anys(v, "enum"),
        vendor_extension: extensions(v),
    }
}

fn response_value(v: &Value) -> ResponseValue {
    let oneof = match v.get("$ref") {
        Some(_) => response_value::Oneof::JsonReference(json_reference(v)),
        None => response_value::Oneof::Response(Box::new(Response {
            description: text(v, "description"),
            schema: v.get("schema").map(|s| SchemaItem { schema: Some(schema(s)) }),
            vendor_extension: extensions(v),
        })),
    };
    ResponseValue { oneof: Some(oneof) }
}

fn named_schemas(v: &Value, key: &str) -> Vec<NamedSchema> {
    entries(v, key).map(|(k, s)| NamedSchema { name: k.clone(), value: Some(schema(s)) }).collect()
}

fn schema(v: &Value) -> Schema {
    let additional_properties = v.get("additionalProperties").map(|a| {
        let oneof = match a {
            Value::Bool(b) => additional_properties_item::Oneof::Boolean(*b),
            other => additional_properties_item::Oneof::Schema(Box::new(schema(other))),
        };
        Box::new(AdditionalPropertiesItem { oneof: Some(oneof) })
    });
    let items = v.get("items").map(|i| ItemsItem {
        schema: match i {
            Value::Array(a) => a.iter().map(schema).collect(),
            one => vec![schema(one)],
        },
    });
    Schema {
        r#ref: text(v, "$ref"),
        format: text(v, "format"),
        title: text(v, "title"),
        description: text(v, "description"),
        default: v.get("default").map(any),
        multiple_of: number(v, "multipleOf"),
        maximum: number(v, "maximum"),
        exclusive_maximum: flag(v, "exclusiveMaximum"),
        minimum: number(v, "minimum"),
        exclusive_minimum: flag(v, "exclusiveMinimum"),
        max_length: integer(v, "maxLength"),
        min_length: integer(v, "minLength"),
        pattern: text(v, "pattern"),
        max_items: integer(v, "maxItems"),
        min_items: integer(v, "minItems"),
        unique_items: flag(v, "uniqueItems"),
        max_properties: integer(v, "maxProperties"),
        min_properties: integer(v, "minProperties"),
        required: texts(v, "required"),
        r#enum: anys(v, "enum"),
        additional_properties,
        r#type: v.get("type").map(|_| TypeItem { value: texts(v, "type") }),
        items,
        all_of: v.get("allOf").and_then(Value::as_array).into_iter().flatten().map(schema).collect(),
        properties: v.get("properties").map(|_| Properties { additional_properties: named_schemas(v, "properties") }),
        read_only: flag(v, "readOnly"),
        example: v.get("example").map(any),
        vendor_extension: extensions(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_round_trip_through_the_messages() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "t", "version": "v"},
            "paths": {"/apis/g/v1/things/{name}": {
                "parameters": [{"in": "path", "name": "name", "required": true, "type": "string", "uniqueItems": true}],
                "get": {"operationId": "readThing", "parameters": [
                    {"in": "query", "name": "pretty", "type": "string"},
                    {"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/T"}},
                ], "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/T"}}},
                "x-kubernetes-action": "get"},
            }},
            "definitions": {"T": {
                "type": "object", "required": ["spec"],
                "properties": {"spec": {"type": "object", "additionalProperties": {"type": "string"}},
                    "n": {"type": "integer", "format": "int64", "default": 7, "minimum": 1},
                    "e": {"type": "string", "enum": ["A", "B"]},
                    "l": {"type": "array", "items": {"type": "string"}}},
                "x-kubernetes-group-version-kind": [{"group": "g", "kind": "T", "version": "v1"}],
            }},
            "security": [{"BearerToken": []}],
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        });
        let bytes = encode(&doc);
        let back = Document::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.swagger, "2.0");
        let item = back.paths.unwrap().path.remove(0);
        assert_eq!(item.name, "/apis/g/v1/things/{name}");
        let item = item.value.unwrap();
        let get = item.get.unwrap();
        assert_eq!(get.operation_id, "readThing");
        assert_eq!(get.vendor_extension[0].name, "x-kubernetes-action");
        let parameter = |item: &ParametersItem| match &item.oneof {
            Some(parameters_item::Oneof::Parameter(p)) => p.oneof.clone(),
            other => panic!("not a parameter: {other:?}"),
        };
        match parameter(&get.parameters[1]) {
            Some(parameter::Oneof::BodyParameter(b)) => assert_eq!(b.schema.unwrap().r#ref, "#/definitions/T"),
            other => panic!("not a body parameter: {other:?}"),
        }
        match parameter(&item.parameters[0]) {
            Some(parameter::Oneof::NonBodyParameter(NonBodyParameter {
                oneof: Some(non_body_parameter::Oneof::Path(p)),
            })) => assert!(p.name == "name" && p.required && p.unique_items),
            other => panic!("not a path parameter: {other:?}"),
        }
        let t = back.definitions.unwrap().additional_properties.remove(0).value.unwrap();
        assert_eq!(t.r#type.unwrap().value, ["object"]);
        let gvk: Value = serde_json::from_str(&t.vendor_extension[0].value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(gvk, json!([{"group": "g", "kind": "T", "version": "v1"}]));
        let props = t.properties.unwrap().additional_properties;
        let n = props.iter().find(|p| p.name == "n").unwrap().value.clone().unwrap();
        assert_eq!((n.format.as_str(), n.minimum, n.default.unwrap().yaml.as_str()), ("int64", 1.0, "7\n"));
        let e = props.iter().find(|p| p.name == "e").unwrap().value.clone().unwrap();
        assert_eq!(e.r#enum.len(), 2);
        let l = props.iter().find(|p| p.name == "l").unwrap().value.clone().unwrap();
        assert_eq!(l.items.unwrap().schema[0].r#type.clone().unwrap().value, ["string"]);
        assert_eq!(back.security[0].additional_properties[0].name, "BearerToken");
    }
}
