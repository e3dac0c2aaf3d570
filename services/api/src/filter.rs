//! Filters and order for the child lists (`ListFilter`): exact matches on any top-level attribute
//! of the listed resource by its proto field name, Octavia's four tag filters, and an order on any
//! such attribute, applied to the protos by reflection over the API's own descriptor set.
use std::{cmp::Ordering, sync::LazyLock};

use lbaas::api::v1 as pb;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};

use crate::{error::ApiError, store::Page};

static POOL: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(lbaas::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()));

/// Whether the filter asks for anything (an absent or empty one keeps the list's own paging).
pub fn is_empty(f: &pb::ListFilter) -> bool {
    f.equals.is_empty()
        && f.tags.is_empty()
        && f.tags_any.is_empty()
        && f.not_tags.is_empty()
        && f.not_tags_any.is_empty()
        && f.order_by.is_empty()
}

/// A sort key: numbers (integers, enums by number, booleans as 0/1), floats or text.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Int(i128),
    Float(f64),
    Text(String),
}

impl Key {
    fn of(value: &Value) -> Self {
        match value {
            Value::Bool(b) => Self::Int(i128::from(*b)),
            Value::I32(n) | Value::EnumNumber(n) => Self::Int(i128::from(*n)),
            Value::I64(n) => Self::Int(i128::from(*n)),
            Value::U32(n) => Self::Int(i128::from(*n)),
            Value::U64(n) => Self::Int(i128::from(*n)),
            Value::F32(n) => Self::Float(f64::from(*n)),
            Value::F64(n) => Self::Float(*n),
            Value::String(s) => Self::Text(s.clone()),
            _ => Self::Text(String::new()),
        }
    }

    fn token(&self) -> String {
        match self {
            Self::Int(n) => format!("i{n}"),
            Self::Float(n) => format!("f{n}"),
            Self::Text(s) => format!("s{s}"),
        }
    }

    fn parse(token: &str) -> Option<Self> {
        let (kind, rest) = token.split_at_checked(1)?;
        match kind {
            "i" => rest.parse().ok().map(Self::Int),
            "f" => rest.parse().ok().map(Self::Float),
            "s" => Some(Self::Text(rest.to_owned())),
            _ => None,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.cmp(b),
            (Self::Float(a), Self::Float(b)) => a.total_cmp(b),
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

/// A field that lists can filter and order on: a singular scalar or enum.
fn attribute(
    message: &MessageDescriptor,
    name: &str,
    param: &str,
) -> Result<FieldDescriptor, ApiError> {
    message
        .get_field_by_name(name)
        .filter(|f| !f.is_list() && !f.is_map() && !matches!(f.kind(), Kind::Message(_)))
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                format!(
                    "{name:?} is not an attribute of {} to filter or order on",
                    message.name()
                ),
            )
        })
}

/// Whether `value` of `field` is what `wanted` says: the text form of a scalar ("true", "80"),
/// or an enum value's name, whole or without its type's prefix ("HTTP" or "PROTOCOL_HTTP").
fn matches(field: &FieldDescriptor, value: &Value, wanted: &str) -> bool {
    match (value, field.kind()) {
        (Value::EnumNumber(n), Kind::Enum(e)) => e.get_value(*n).is_some_and(|v| {
            v.name() == wanted
                || v.name()
                    .strip_suffix(wanted)
                    .is_some_and(|prefix| prefix.ends_with('_'))
        }),
        (Value::String(s), _) => s == wanted,
        (Value::Bool(b), _) => wanted.parse::<bool>().is_ok_and(|w| w == *b),
        (Value::I32(n), _) => wanted.parse::<i32>().is_ok_and(|w| w == *n),
        (Value::I64(n), _) => wanted.parse::<i64>().is_ok_and(|w| w == *n),
        (Value::U32(n), _) => wanted.parse::<u32>().is_ok_and(|w| w == *n),
        (Value::U64(n), _) => wanted.parse::<u64>().is_ok_and(|w| w == *n),
        (Value::F32(n), _) => wanted.parse::<f32>().is_ok_and(|w| w == *n),
        (Value::F64(n), _) => wanted.parse::<f64>().is_ok_and(|w| w == *n),
        _ => false,
    }
}

/// The items of the whole (unfiltered) list, `message` their proto's full name, filtered,
/// ordered (then by id) and cut to one page after `token`.
pub fn apply<T: prost::Message>(
    message: &str,
    items: Vec<T>,
    filter: &pb::ListFilter,
    page_size: i32,
    token: &str,
) -> Result<Page<T>, ApiError> {
    let pool = POOL
        .as_ref()
        .map_err(|e| ApiError::Internal(format!("descriptor set: {e}")))?;
    let descriptor = pool
        .get_message_by_name(message)
        .ok_or_else(|| ApiError::Internal(format!("no message {message} in the descriptor set")))?;
    let size = usize::try_from(crate::store::page_size(page_size)?).unwrap_or(usize::MAX);
    let mut violations = crate::convert::Violations::default();
    for (param, tags) in [
        ("filter.tags", &filter.tags),
        ("filter.tags_any", &filter.tags_any),
        ("filter.not_tags", &filter.not_tags),
        ("filter.not_tags_any", &filter.not_tags_any),
    ] {
        crate::convert::check_tags(&mut violations, param, tags);
    }
    violations.finish(())?;
    let mut equals = Vec::with_capacity(filter.equals.len());
    for (name, wanted) in &filter.equals {
        equals.push((
            attribute(&descriptor, name, "filter.equals")?,
            wanted.as_str(),
        ));
    }
    let (order_name, descending) = match filter.order_by.trim().split_once(' ') {
        Some((name, "desc")) => (name, true),
        Some((name, "asc")) => (name, false),
        Some(_) => {
            return Err(ApiError::invalid(
                "filter.order_by",
                "is an attribute, optionally followed by \" asc\" or \" desc\"",
            ));
        }
        None if filter.order_by.trim().is_empty() => ("id", false),
        None => (filter.order_by.trim(), false),
    };
    let order = attribute(&descriptor, order_name, "filter.order_by")?;
    let id = attribute(&descriptor, "id", "filter.order_by")?;
    let tag_field = descriptor
        .get_field_by_name("tags")
        .filter(FieldDescriptor::is_list);
    let tagged = !(filter.tags.is_empty()
        && filter.tags_any.is_empty()
        && filter.not_tags.is_empty()
        && filter.not_tags_any.is_empty());
    if tagged && tag_field.is_none() {
        return Err(ApiError::invalid(
            "filter.tags",
            format!("{} has no tags", descriptor.name()),
        ));
    }

    let mut kept: Vec<(Key, String, T)> = Vec::new();
    for item in items {
        let dynamic = DynamicMessage::decode(descriptor.clone(), item.encode_to_vec().as_slice())
            .map_err(|e| ApiError::Internal(format!("reflecting {message}: {e}")))?;
        if !equals
            .iter()
            .all(|(field, wanted)| matches(field, &dynamic.get_field(field), wanted))
        {
            continue;
        }
        if let Some(tag_field) = &tag_field {
            let value = dynamic.get_field(tag_field);
            let tags: Vec<&str> = value
                .as_list()
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let has = |t: &String| tags.contains(&t.as_str());
            if !(filter.tags.iter().all(has)
                && (filter.tags_any.is_empty() || filter.tags_any.iter().any(has))
                && (filter.not_tags.is_empty() || !filter.not_tags.iter().all(has))
                && !filter.not_tags_any.iter().any(has))
            {
                continue;
            }
        }
        let key = Key::of(&dynamic.get_field(&order));
        let id = dynamic
            .get_field(&id)
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        kept.push((key, id, item));
    }
    let direction = |o: Ordering| if descending { o.reverse() } else { o };
    kept.sort_by(|a, b| direction(a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1))));
    if !token.is_empty() {
        let (key, last) = token
            .split_once('\n')
            .and_then(|(k, id)| Some((Key::parse(k)?, id.to_owned())))
            .ok_or_else(|| ApiError::invalid("page_token", "is not a token this list returned"))?;
        kept.retain(|(k, id, _)| {
            direction(k.cmp(&key).then_with(|| id.cmp(&last))) == Ordering::Greater
        });
    }
    let next_page_token = if kept.len() > size {
        kept.truncate(size);
        kept.last()
            .map(|(k, id, _)| format!("{}\n{id}", k.token()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Page {
        items: kept.into_iter().map(|(_, _, item)| item).collect(),
        next_page_token,
    })
}
