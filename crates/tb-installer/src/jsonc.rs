//! JSON(C) documents read and edited through `jsonc-parser`'s concrete
//! syntax tree.
//!
//! A file is parsed once; reads walk the tree, and edits go through the
//! tree's own insert, replace and remove, which keep comments, key order and
//! everything the installer does not touch byte for byte. Two layouts the
//! tree would change are kept here: a container written on one line gets its
//! new member on that line (the tree would spread the whole container over
//! several lines), and arrays are written one element a line in a
//! pretty-printed file (the tree writes short arrays on one line).

use std::path::{Path, PathBuf};

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{
    CstContainerNode, CstInputValue, CstLeafNode, CstNode, CstObject, CstObjectProp, CstRootNode,
};

use crate::contract::PlanError;

const BOM: &str = "\u{feff}";

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Str(String),
    Bool(bool),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
    /// Text copied verbatim (e.g. a value from the pristine backup).
    Raw(String),
}

impl J {
    pub(crate) fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    pub(crate) fn obj<const N: usize>(pairs: [(&str, J); N]) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

/// Quotes `s` as a JSON string.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

/// What a value is: for messages, and for settings that take more than one
/// shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    Str,
    Num,
    Bool,
    Null,
    /// A bare word (JSON5), which no client writes.
    Word,
}

impl Kind {
    pub(crate) fn of(n: &CstNode) -> Kind {
        match n {
            CstNode::Container(CstContainerNode::Array(_)) => Kind::Array,
            CstNode::Container(_) => Kind::Object,
            CstNode::Leaf(CstLeafNode::StringLit(_)) => Kind::Str,
            CstNode::Leaf(CstLeafNode::NumberLit(_)) => Kind::Num,
            CstNode::Leaf(CstLeafNode::BooleanLit(_)) => Kind::Bool,
            CstNode::Leaf(CstLeafNode::NullKeyword(_)) => Kind::Null,
            CstNode::Leaf(_) => Kind::Word,
        }
    }

    /// "an object", "a string", … for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::Str => "a string",
            Kind::Num => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
            Kind::Word => "a bare word",
        }
    }
}

/// The string `n` holds, decoded.
pub(crate) fn as_str(n: &CstNode) -> Option<String> {
    n.as_string_lit()?.decoded_value().ok()
}

/// The string member `key` of object `n`.
pub(crate) fn str_member(n: &CstNode, key: &str) -> Option<String> {
    as_str(&member(&n.as_object()?, key)?.value()?)
}

/// The last member called `key` (like `JSON.parse`, the last one wins;
/// `CstObject::get` returns the first).
fn member(obj: &CstObject, key: &str) -> Option<CstObjectProp> {
    obj.properties()
        .into_iter()
        .rev()
        .find(|p| p.decoded_name().as_deref() == Some(key))
}

/// JSONC plus the JSON5 relaxations editors write, but not a missing
/// comma: that is a typo to report, not a dialect.
fn options() -> ParseOptions {
    ParseOptions {
        allow_missing_commas: false,
        ..ParseOptions::default()
    }
}

/// Parses `text` (without a byte-order mark), or says where and what is
/// wrong.
fn parse(text: &str) -> Result<CstRootNode, String> {
    CstRootNode::parse(text, &options()).map_err(|e| {
        format!(
            "not valid JSON at line {}, column {}: {}",
            e.line_display(),
            e.column_display(),
            e.kind()
        )
    })
}

/// How new text is laid out, learnt from the file.
#[derive(Debug, Clone, Copy)]
struct Style {
    nl: &'static str,
    /// The root object is on one line: everything new goes inline.
    compact: bool,
    /// `"key": value` (true) or `"key":value`.
    colon_space: bool,
}

impl Style {
    fn of(root: &CstRootNode) -> Style {
        let nl = match root.newline_kind() {
            jsonc_parser::cst::CstNewlineKind::CarriageReturnLineFeed => "\r\n",
            // A lone CR is not a line end tokenbuddy writes.
            _ => "\n",
        };
        let first = root
            .object_value()
            .and_then(|o| o.properties().into_iter().next());
        let compact = first.as_ref().is_some_and(|p| {
            !CstNode::from(p.clone())
                .previous_siblings()
                .any(|s| s.is_newline())
        });
        let colon_space = first.is_none_or(|p| {
            let children = p.children();
            let colon = children.iter().position(|c| c.token_char() == Some(':'));
            colon
                .and_then(|i| children.get(i + 1))
                .is_none_or(|c| c.is_trivia())
        });
        Style {
            nl,
            compact,
            colon_space,
        }
    }

    /// What follows a `,` or `:` on one line.
    fn sep(self) -> &'static str {
        if self.colon_space { " " } else { "" }
    }
}

/// Edits one JSON(C) document through its syntax tree.
#[derive(Debug)]
pub(crate) struct JsonDoc {
    path: PathBuf,
    root: CstRootNode,
    style: Style,
    /// The file starts with a byte-order mark (the parser does not take it).
    bom: bool,
    /// The file was empty (or missing): the result gets a final newline.
    fresh: bool,
    /// The text as read, when it was blank (whitespace and comments only).
    blank: Option<String>,
}

impl JsonDoc {
    /// Reads `text` (`None` = missing file) as a document whose root must be
    /// an object; a missing or blank file is an empty object.
    pub(crate) fn open(path: &Path, text: Option<&str>) -> Result<Self, PlanError> {
        let text = text.unwrap_or("");
        let (bom, body) = match text.strip_prefix(BOM) {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let malformed = |reason| PlanError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let mut root = parse(body).map_err(malformed)?;
        let mut blank = None;
        match root.value() {
            None => {
                // A blank file (or one with only comments) gets an object
                // after whatever was there.
                let nl = if body.contains("\r\n") { "\r\n" } else { "\n" };
                let mut t = body.trim_end().to_owned();
                if !t.is_empty() {
                    t.push_str(nl);
                }
                t.push_str("{}");
                root = parse(&t).map_err(malformed)?;
                blank = Some(text.to_owned());
            }
            Some(v) if v.as_object().is_none() => {
                return Err(PlanError::UnexpectedRoot {
                    path: path.to_path_buf(),
                    expected: "a JSON object",
                    found: format!("{} (JSON)", Kind::of(&v).describe()),
                });
            }
            Some(_) => {}
        }
        Ok(Self {
            path: path.to_path_buf(),
            style: Style::of(&root),
            root,
            bom,
            fresh: blank.is_some(),
            blank,
        })
    }

    /// The document's text now.
    pub(crate) fn text(&self) -> String {
        let body = self.root.to_string();
        if self.bom {
            format!("{BOM}{body}")
        } else {
            body
        }
    }

    /// The finished text: a file that was blank ends with a line break.
    pub(crate) fn into_text(self) -> String {
        let mut t = self.text();
        if self.fresh && !t.ends_with('\n') {
            t.push_str(self.style.nl);
        }
        t
    }

    /// The text as read, when the file was blank (whitespace and comments
    /// only) and its object is still empty: there is nothing in it to
    /// write back, so the file can stay as it was.
    pub(crate) fn untouched_blank(&self) -> Option<&str> {
        let blank = self.blank.as_deref()?;
        let empty = self
            .root
            .object_value()
            .is_some_and(|o| o.properties().is_empty());
        empty.then_some(blank)
    }

    fn object(&self) -> Result<CstObject, PlanError> {
        self.root
            .object_value()
            .ok_or_else(|| self.internal("the root object vanished"))
    }

    fn internal(&self, what: &str) -> PlanError {
        PlanError::Malformed {
            path: self.path.clone(),
            reason: format!("internal error while editing ({what}); nothing was written"),
        }
    }

    /// The value at `path` (object keys), if present.
    pub(crate) fn get(&self, path: &[&str]) -> Option<CstNode> {
        let mut node = self.root.value()?;
        for key in path {
            node = member(&node.as_object()?, key)?.value()?;
        }
        Some(node)
    }

    /// The string at `path`, if present and a string.
    pub(crate) fn get_str(&self, path: &[&str]) -> Option<String> {
        self.get(path).as_ref().and_then(as_str)
    }

    /// The text of `node`.
    pub(crate) fn raw(&self, node: &CstNode) -> String {
        node.to_string()
    }

    /// Fails unless the value at `path` is absent or an object.
    pub(crate) fn expect_object(&self, path: &[&str]) -> Result<(), PlanError> {
        for n in 1..=path.len() {
            if let Some(node) = self.get(&path[..n])
                && node.as_object().is_none()
            {
                return Err(self.wrong_type(&path[..n], "an object", Kind::of(&node).describe()));
            }
        }
        Ok(())
    }

    pub(crate) fn wrong_type(
        &self,
        path: &[&str],
        expected: &'static str,
        found: &str,
    ) -> PlanError {
        PlanError::WrongType {
            path: self.path.clone(),
            key: path.join("."),
            expected,
            found: found.to_owned(),
        }
    }

    /// Sets the value at `path`, creating missing parent objects; fails when
    /// a parent exists but is not an object.
    pub(crate) fn set(&mut self, path: &[&str], value: J) -> Result<(), PlanError> {
        let mut obj = self.object()?;
        for (i, key) in path.iter().enumerate() {
            match member(&obj, key) {
                Some(prop) if i + 1 == path.len() => return self.replace_value(&prop, value),
                Some(prop) => {
                    let v = prop
                        .value()
                        .ok_or_else(|| self.internal("a member lost its value"))?;
                    obj = v.as_object().ok_or_else(|| {
                        self.wrong_type(&path[..=i], "an object", Kind::of(&v).describe())
                    })?;
                }
                None => {
                    // Build the rest of the path as nested objects.
                    let mut v = value;
                    for k in path[i + 1..].iter().rev() {
                        v = J::Obj(vec![((*k).to_owned(), v)]);
                    }
                    return self.insert(&obj.into(), Some(key), v);
                }
            }
        }
        Err(self.internal("empty key path"))
    }

    /// Removes the member at `path` (every duplicate of it). Returns whether
    /// anything was removed.
    pub(crate) fn remove(&mut self, path: &[&str]) -> Result<bool, PlanError> {
        let Some((last, parent_path)) = path.split_last() else {
            return Ok(false);
        };
        let mut removed = false;
        while let Some(prop) = self
            .get(parent_path)
            .and_then(|p| p.as_object())
            .and_then(|o| member(&o, last))
        {
            remove_item(prop.into());
            removed = true;
        }
        Ok(removed)
    }

    /// Removes the array elements at `path` for which `pred` holds.
    pub(crate) fn remove_elements(
        &mut self,
        path: &[&str],
        pred: impl Fn(&CstNode) -> bool,
    ) -> Result<bool, PlanError> {
        let mut removed = false;
        while let Some(el) = self
            .get(path)
            .and_then(|a| a.as_array())
            .and_then(|a| a.elements().into_iter().find(|e| pred(e)))
        {
            remove_item(el);
            removed = true;
        }
        Ok(removed)
    }

    /// Replaces the first element at `path` (an array) for which `pred`
    /// holds with `value`, or appends `value`. A missing array is created.
    pub(crate) fn upsert_element(
        &mut self,
        path: &[&str],
        pred: impl Fn(&CstNode) -> bool,
        value: J,
    ) -> Result<(), PlanError> {
        let Some(node) = self.get(path) else {
            return self.set(path, J::Arr(vec![value]));
        };
        let Some(arr) = node.as_array() else {
            return Err(self.wrong_type(path, "an array", Kind::of(&node).describe()));
        };
        let found = arr.elements().into_iter().find(|e| pred(e));
        match found {
            // Already what it would be: rewriting it could only change its
            // layout, and a second install must plan nothing.
            Some(el) if same_value(&el, &value) => Ok(()),
            Some(el) => {
                let (input, raw) = to_input(value);
                let new = replace(el, input).ok_or_else(|| self.internal("replace an element"))?;
                reindent(&new);
                self.after_write(&new, raw)
            }
            None => self.insert(&arr.into(), None, value),
        }
    }

    /// Removes `path` when it is an empty object or array.
    pub(crate) fn remove_if_empty(&mut self, path: &[&str]) -> Result<bool, PlanError> {
        let empty = self.get(path).is_some_and(|n| match n {
            CstNode::Container(CstContainerNode::Object(o)) => o.properties().is_empty(),
            CstNode::Container(CstContainerNode::Array(a)) => a.elements().is_empty(),
            _ => false,
        });
        if empty { self.remove(path) } else { Ok(false) }
    }

    /// Replaces the value of `prop`.
    fn replace_value(&mut self, prop: &CstObjectProp, value: J) -> Result<(), PlanError> {
        let (input, raw) = to_input(value);
        prop.set_value(input);
        let new = prop
            .value()
            .ok_or_else(|| self.internal("a member lost its value"))?;
        self.after_write(&new, raw)
    }

    /// Appends a member (or array element) to `container`.
    fn insert(
        &mut self,
        container: &CstContainerNode,
        key: Option<&str>,
        value: J,
    ) -> Result<(), PlanError> {
        let items = container.children_exclude_trivia_and_tokens();
        let one_line = !items.is_empty() && !container.children().iter().any(CstNode::is_newline);
        if self.style.compact || one_line {
            return self.insert_inline(container, &items, key, &value);
        }
        let (input, raw) = to_input(value);
        let new: CstNode = match (container, key) {
            (CstContainerNode::Object(o), Some(k)) => o.append(k, input).into(),
            (CstContainerNode::Array(a), None) => {
                let el = a.append(input);
                if items.is_empty() {
                    // The tree writes `["x"]`; a pretty file gets a line.
                    a.ensure_multiline();
                }
                el
            }
            _ => return Err(self.internal("a member without a key")),
        };
        self.after_write(&new, raw)
    }

    /// Inserts a member on the line of a one-line container. The tree would
    /// lay the whole container out again, so this splices the text at the
    /// place the tree gives and reads the document again.
    fn insert_inline(
        &mut self,
        container: &CstContainerNode,
        items: &[CstNode],
        key: Option<&str>,
        value: &J,
    ) -> Result<(), PlanError> {
        let sep = self.style.sep();
        let mut text = key
            .map(|k| format!("{}:{sep}", quote(k)))
            .unwrap_or_default();
        flat(value, sep, &mut text);
        let (at, ins) = match items.last() {
            None => {
                let close = container
                    .children()
                    .pop()
                    .ok_or_else(|| self.internal("a container without brackets"))?;
                (offset(&close), text)
            }
            Some(last) => match last.trailing_comma() {
                Some(comma) => (offset(&comma.into()) + 1, format!("{sep}{text},")),
                None => (
                    offset(last) + last.to_string().len(),
                    format!(",{sep}{text}"),
                ),
            },
        };
        let mut body = self.root.to_string();
        body.insert_str(at, &ins);
        self.reread(&body)
    }

    /// Lays out a value the tree just wrote like the rest of the file, and
    /// puts verbatim text in its place holder.
    fn after_write(&mut self, new: &CstNode, raw: Option<String>) -> Result<(), PlanError> {
        if self.style.compact {
            flatten(new, self.style.sep());
        } else {
            expand(new);
            if !self.style.colon_space {
                tighten_colons(new);
            }
        }
        let Some(raw) = raw else {
            return Ok(());
        };
        let placeholder = find_placeholder(new)
            .ok_or_else(|| self.internal("the place for a copied value is gone"))?;
        placeholder.set_raw_value(raw);
        // The tree now holds text it did not parse: read it again.
        let body = self.root.to_string();
        self.reread(&body)
    }

    fn reread(&mut self, body: &str) -> Result<(), PlanError> {
        self.root = parse(body).map_err(|e| self.internal(&e))?;
        Ok(())
    }
}

/// Marks where a [`J::Raw`] goes until its text is set (a NUL never
/// appears in a value tokenbuddy writes).
const PLACEHOLDER: &str = "\0tokenbuddy-verbatim\0";

/// The tree's input for `v`, and the verbatim text of its [`J::Raw`] part.
fn to_input(v: J) -> (CstInputValue, Option<String>) {
    let mut raw = None;
    let input = convert(v, &mut raw);
    (input, raw)
}

fn convert(v: J, raw: &mut Option<String>) -> CstInputValue {
    match v {
        J::Str(s) => CstInputValue::String(s),
        J::Bool(b) => CstInputValue::Bool(b),
        J::Arr(a) => CstInputValue::Array(a.into_iter().map(|x| convert(x, raw)).collect()),
        J::Obj(o) => {
            CstInputValue::Object(o.into_iter().map(|(k, x)| (k, convert(x, raw))).collect())
        }
        J::Raw(r) => {
            *raw = Some(r);
            CstInputValue::String(PLACEHOLDER.to_owned())
        }
    }
}

fn find_placeholder(n: &CstNode) -> Option<jsonc_parser::cst::CstStringLit> {
    if let Some(s) = n.as_string_lit()
        && s.decoded_value().is_ok_and(|v| v == PLACEHOLDER)
    {
        return Some(s);
    }
    n.children().iter().find_map(find_placeholder)
}

/// Replaces array element `n` with `input`, returning the new element.
fn replace(n: CstNode, input: CstInputValue) -> Option<CstNode> {
    match n {
        CstNode::Container(CstContainerNode::Object(o)) => o.replace_with(input),
        CstNode::Container(CstContainerNode::Array(a)) => a.replace_with(input),
        CstNode::Leaf(CstLeafNode::StringLit(s)) => s.replace_with(input),
        CstNode::Leaf(CstLeafNode::NumberLit(s)) => s.replace_with(input),
        CstNode::Leaf(CstLeafNode::BooleanLit(s)) => s.replace_with(input),
        CstNode::Leaf(CstLeafNode::NullKeyword(s)) => s.replace_with(input),
        CstNode::Leaf(CstLeafNode::WordLit(s)) => s.replace_with(input),
        _ => None,
    }
}

/// Writes `v` on one line, `sep` after each `,` and `:`.
fn flat(v: &J, sep: &str, out: &mut String) {
    match v {
        J::Str(s) => out.push_str(&quote(s)),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Raw(r) => out.push_str(r),
        J::Arr(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    out.push_str(sep);
                }
                flat(x, sep, out);
            }
            out.push(']');
        }
        J::Obj(items) => {
            out.push('{');
            for (i, (k, x)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    out.push_str(sep);
                }
                out.push_str(&quote(k));
                out.push(':');
                out.push_str(sep);
                flat(x, sep, out);
            }
            out.push('}');
        }
    }
}

/// Byte offset of `n` in the document (the tree keeps no positions).
fn offset(n: &CstNode) -> usize {
    let before: usize = n.previous_siblings().map(|s| s.to_string().len()).sum();
    match n.parent() {
        Some(p) if !p.is_root() => offset(&p.into()) + before,
        _ => before,
    }
}

/// Puts the value the tree wrote on one line: no line breaks, `sep` after
/// `,` and `:`.
fn flatten(n: &CstNode, sep: &str) {
    let mut after_sep = false;
    for c in n.children() {
        if c.is_newline() {
            c.remove();
        } else if let Some(w) = c.as_whitespace() {
            if after_sep && !sep.is_empty() {
                w.set_value(sep.to_owned());
                after_sep = false;
            } else {
                w.remove();
            }
        } else {
            after_sep = matches!(c.token_char(), Some(',' | ':'));
            flatten(&c, sep);
        }
    }
}

/// Writes every array in the value the tree wrote one element a line.
fn expand(n: &CstNode) {
    if let Some(a) = n.as_array()
        && !a.elements().is_empty()
    {
        a.ensure_multiline();
    }
    for c in n.children() {
        if matches!(c, CstNode::Container(_)) {
            expand(&c);
        }
    }
}

/// Removes a member or element with its comma. The tree keeps the space
/// after the comma of a first item written right after the bracket, which
/// would leave `{ "b": 2}`.
fn remove_item(n: CstNode) {
    let right_after_open = n.previous_sibling().is_some_and(|p| p.is_token());
    let gap = n
        .trailing_comma()
        .and_then(|c| CstNode::from(c).next_sibling())
        .filter(CstNode::is_whitespace);
    n.remove();
    if let Some(gap) = gap
        && right_after_open
        && gap.parent().is_some()
    {
        gap.remove();
    }
}

/// Whether `n` holds exactly `v` (same members in the same order, same
/// strings and booleans). Verbatim text is never taken as equal.
fn same_value(n: &CstNode, v: &J) -> bool {
    match v {
        J::Str(want) => n
            .as_string_lit()
            .is_some_and(|s| s.decoded_value().is_ok_and(|got| &got == want)),
        J::Bool(want) => n.as_boolean_lit().is_some_and(|b| b.value() == *want),
        J::Arr(want) => n.as_array().is_some_and(|a| {
            let got = a.elements();
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| same_value(g, w))
        }),
        J::Obj(want) => n.as_object().is_some_and(|o| {
            let got = o.properties();
            got.len() == want.len()
                && got.iter().zip(want).all(|(g, (key, w))| {
                    g.name()
                        .and_then(|name| name.decoded_value().ok())
                        .is_some_and(|name| &name == key)
                        && g.value().is_some_and(|gv| same_value(&gv, w))
                })
        }),
        J::Raw(_) => false,
    }
}

/// The indentation of `n` when it starts its line.
fn line_indent(n: &CstNode) -> Option<String> {
    let mut indent = String::new();
    for s in n.previous_siblings() {
        if s.is_newline() {
            return Some(indent);
        }
        indent.insert_str(0, &s.as_whitespace()?.value());
    }
    None
}

/// Indents the lines of a replaced array element from the element's own
/// line: the tree indents them from the array's.
fn reindent(n: &CstNode) {
    let children = n.children();
    let (Some(own), Some(close)) = (
        line_indent(n),
        children.iter().rev().nth(1).and_then(line_indent_of_close),
    ) else {
        return;
    };
    if own == close || !own.starts_with(&close) {
        return;
    }
    shift(n, &close, &own);
}

/// The indentation in front of a closing bracket, when it starts its line.
fn line_indent_of_close(ws: &CstNode) -> Option<String> {
    let w = ws.as_whitespace()?;
    ws.previous_sibling()
        .is_some_and(|p| p.is_newline())
        .then(|| w.value())
}

/// Replaces the leading `from` of every line inside `n` with `to`.
fn shift(n: &CstNode, from: &str, to: &str) {
    let mut line_start = false;
    for c in n.children() {
        if let Some(w) = c.as_whitespace()
            && line_start
            && let Some(rest) = w.value().strip_prefix(from)
        {
            w.set_value(format!("{to}{rest}"));
        }
        line_start = c.is_newline();
        if matches!(c, CstNode::Container(_)) {
            shift(&c, from, to);
        }
    }
}

/// Drops the space the tree writes after each `:`.
fn tighten_colons(n: &CstNode) {
    if n.as_object_prop().is_some() {
        let mut after_colon = false;
        for c in n.children() {
            if after_colon && c.is_whitespace() {
                c.remove();
                break;
            }
            after_colon = c.token_char() == Some(':');
        }
    }
    for c in n.children() {
        if matches!(c, CstNode::Container(_)) {
            tighten_colons(&c);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn doc(t: &str) -> JsonDoc {
        JsonDoc::open(Path::new("/x.json"), Some(t)).unwrap()
    }

    #[test]
    fn parses_jsonc_and_json5_bits() {
        let t = "// c\n{a: 1, 'b': 'x\\'y', \"c\": [1, 2,], /* d */ \"d\": {\"e\": null},}\n";
        let d = doc(t);
        assert_eq!(d.get_str(&["b"]).as_deref(), Some("x'y"));
        assert!(d.get(&["a"]).is_some());
        assert!(parse("{\"a\": }").is_err());
        let e = parse("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        // Where the comma is missing (after `1`), not where `"b"` starts.
        assert!(e.starts_with("not valid JSON at line 2, column 9: "), "{e}");
        assert!(parse("  // only\n").unwrap().value().is_none());
        let n = parse("\"\\ud83d\\ude00\"").unwrap().value().unwrap();
        assert_eq!(as_str(&n).as_deref(), Some("\u{1F600}"));
    }

    #[test]
    fn set_and_remove_round_trip_pretty() {
        let orig = "{\n  \"a\": 1, // one\n  \"b\": {\n    \"c\": true\n  }\n}\n";
        let mut d = doc(orig);
        d.set(&["b", "x"], J::s("y")).unwrap();
        d.set(&["n", "m"], J::obj([("k", J::Arr(vec![J::s("p")]))]))
            .unwrap();
        assert_eq!(
            d.text(),
            "{\n  \"a\": 1, // one\n  \"b\": {\n    \"c\": true,\n    \"x\": \"y\"\n  },\n  \"n\": {\n    \"m\": {\n      \"k\": [\n        \"p\"\n      ]\n    }\n  }\n}\n"
        );
        d.remove(&["n"]).unwrap();
        d.remove(&["b", "x"]).unwrap();
        assert_eq!(d.text(), orig);
    }

    #[test]
    fn insert_after_trailing_comment_and_trailing_comma() {
        let orig = "{\n\t\"a\": 1 // keep\n}";
        let mut d = doc(orig);
        d.set(&["z"], J::Bool(true)).unwrap();
        assert_eq!(d.text(), "{\n\t\"a\": 1, // keep\n\t\"z\": true\n}");
        d.remove(&["z"]).unwrap();
        assert_eq!(d.text(), orig);

        let orig = "{\n  \"a\": 1,\n}";
        let mut d = doc(orig);
        d.set(&["z"], J::Bool(true)).unwrap();
        assert_eq!(d.text(), "{\n  \"a\": 1,\n  \"z\": true,\n}");
        d.remove(&["z"]).unwrap();
        assert_eq!(d.text(), orig);
    }

    #[test]
    fn compact_and_empty_objects() {
        let mut d = doc("{\"a\":1}");
        d.set(&["b"], J::s("x")).unwrap();
        assert_eq!(d.text(), "{\"a\":1,\"b\":\"x\"}");
        d.remove(&["a"]).unwrap();
        assert_eq!(d.text(), "{\"b\":\"x\"}");
        d.remove(&["b"]).unwrap();
        assert_eq!(d.text(), "{}");

        let mut d = doc("{}");
        d.set(&["e", "k"], J::s("v")).unwrap();
        assert_eq!(d.text(), "{\n  \"e\": {\n    \"k\": \"v\"\n  }\n}");
        d.remove(&["e", "k"]).unwrap();
        assert_eq!(d.text(), "{\n  \"e\": {}\n}");
        d.remove(&["e"]).unwrap();
        assert_eq!(d.text(), "{}");
    }

    #[test]
    fn setting_again_after_an_inline_insert_changes_nothing() {
        // Found by the `installer_editors` fuzz target: the last member's
        // value ends on a less indented line than it starts, so the new
        // member went inline there, indented like the line the last member
        // starts on; setting it again re-indented it.
        let orig = "{\n  \"p\": {\n    \"a\": {\n      \"x\": 1\n}  }\n}\n";
        let v = || J::obj([("k", J::obj([("m", J::s("v"))]))]);
        let mut d = doc(orig);
        d.set(&["p", "t"], v()).unwrap();
        let once = d.text().to_owned();
        d.set(&["p", "t"], v()).unwrap();
        assert_eq!(d.text(), once);
        assert_eq!(d.get_str(&["p", "t", "k", "m"]).as_deref(), Some("v"));
    }

    #[test]
    fn crlf_and_first_member_removal() {
        let mut d = doc("{\r\n    \"a\": 1\r\n}\r\n");
        d.set(&["b"], J::s("x")).unwrap();
        assert_eq!(d.text(), "{\r\n    \"a\": 1,\r\n    \"b\": \"x\"\r\n}\r\n");
        d.remove(&["a"]).unwrap();
        assert_eq!(d.text(), "{\r\n    \"b\": \"x\"\r\n}\r\n");
    }

    #[test]
    fn arrays() {
        let mut d = doc("{\n  \"l\": [\n    {\"id\": \"a\"}\n  ]\n}");
        let is_b = |n: &CstNode| str_member(n, "id").as_deref() == Some("b");
        d.upsert_element(&["l"], is_b, J::obj([("id", J::s("b"))]))
            .unwrap();
        assert_eq!(
            d.text(),
            "{\n  \"l\": [\n    {\"id\": \"a\"},\n    {\n      \"id\": \"b\"\n    }\n  ]\n}"
        );
        d.remove_elements(&["l"], is_b).unwrap();
        assert_eq!(d.text(), "{\n  \"l\": [\n    {\"id\": \"a\"}\n  ]\n}");
    }

    #[test]
    fn wrong_types_and_roots() {
        assert!(matches!(
            JsonDoc::open(Path::new("/x.json"), Some("[1]")),
            Err(PlanError::UnexpectedRoot { .. })
        ));
        let mut d = doc("{\"env\": []}");
        assert!(matches!(
            d.set(&["env", "A"], J::s("x")),
            Err(PlanError::WrongType { .. })
        ));
        let d = JsonDoc::open(Path::new("/x.json"), None).unwrap();
        assert_eq!(d.into_text(), "{}\n");
    }

    #[test]
    fn one_line_containers_stay_on_their_line() {
        let orig = "{\n  \"o\": { \"a\": 1 },\n  \"l\": [\"x\"]\n}\n";
        let mut d = doc(orig);
        d.set(&["o", "b"], J::obj([("k", J::Arr(vec![J::s("v")]))]))
            .unwrap();
        let is_y = |n: &CstNode| as_str(n).as_deref() == Some("y");
        d.upsert_element(&["l"], is_y, J::s("y")).unwrap();
        assert_eq!(
            d.text(),
            "{\n  \"o\": { \"a\": 1, \"b\": {\"k\": [\"v\"]} },\n  \"l\": [\"x\", \"y\"]\n}\n"
        );
        d.remove(&["o", "b"]).unwrap();
        d.remove_elements(&["l"], is_y).unwrap();
        assert_eq!(d.text(), orig);
    }

    #[test]
    fn replaced_elements_are_indented_from_their_own_line() {
        let mut d = doc("{\n  \"l\": [\n    {\"id\": \"a\", \"n\": 1}\n  ]\n}");
        let is_a = |n: &CstNode| str_member(n, "id").as_deref() == Some("a");
        d.upsert_element(&["l"], is_a, J::obj([("id", J::s("a"))]))
            .unwrap();
        let once = d.text();
        assert_eq!(
            once,
            "{\n  \"l\": [\n    {\n      \"id\": \"a\"\n    }\n  ]\n}"
        );
        d.upsert_element(&["l"], is_a, J::obj([("id", J::s("a"))]))
            .unwrap();
        assert_eq!(d.text(), once);
    }

    #[test]
    fn verbatim_values_byte_order_mark_and_duplicates() {
        let mut d = doc("\u{feff}{\"a\": 1, \"a\": \"last\"}");
        assert_eq!(d.get_str(&["a"]).as_deref(), Some("last"));
        d.set(&["a"], J::Raw("{ /* kept */ \"x\": [1,2] }".into()))
            .unwrap();
        d.set(&["n", "m"], J::Raw("'single'".into())).unwrap();
        assert_eq!(d.get(&["a", "x"]).map(|n| Kind::of(&n)), Some(Kind::Array));
        assert_eq!(d.get_str(&["n", "m"]).as_deref(), Some("single"));
        assert_eq!(
            d.text(),
            "\u{feff}{\"a\": 1, \"a\": { /* kept */ \"x\": [1,2] }, \"n\": {\"m\": 'single'}}"
        );
        assert!(d.remove(&["a"]).unwrap());
        assert_eq!(d.text(), "\u{feff}{\"n\": {\"m\": 'single'}}");
    }

    #[test]
    fn unreadable_files_are_refused_with_the_place() {
        for (text, at) in [
            ("{\"a\": }", "line 1, column 7"),
            ("{\n  \"a\": 1 /* open", "line 2, column 10"),
            ("{\"a\": 1}}", "line 1, column 9"),
        ] {
            let Err(PlanError::Malformed { reason, .. }) =
                JsonDoc::open(Path::new("/x.json"), Some(text))
            else {
                panic!("{text:?} was read");
            };
            assert!(reason.contains(at), "{text:?}: {reason}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i32>().prop_map(Value::from),
                "[a-z \\\"é/]{0,8}".prop_map(Value::String),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-e]{1,2}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn object() -> impl Strategy<Value = Value> {
            prop::collection::btree_map("[a-e]{1,2}", value(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        }

        proptest! {
            /// Setting a new key path and removing it again gives back the
            /// original bytes, and the edited text is the expected JSON.
            #[test]
            fn set_then_remove_round_trips(
                v in object(),
                pretty in any::<bool>(),
                path in prop::collection::vec("[a-g]{1,2}", 1..4),
                new in "[a-z0-9]{0,6}",
            ) {
                let text = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    serde_json::to_string(&v).unwrap()
                };
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                let mut d = doc(&text);
                // Expected value, or skip when a parent is not an object.
                let mut expected = v.clone();
                let mut cur = &mut expected;
                let mut fresh_at = None;
                for (i, k) in keys.iter().enumerate() {
                    let Value::Object(m) = cur else {
                        prop_assert!(d.set(&keys, J::s(&new)).is_err());
                        return Ok(());
                    };
                    if fresh_at.is_none() && !m.contains_key(*k) {
                        fresh_at = Some(i);
                    }
                    cur = m.entry((*k).to_owned()).or_insert_with(|| {
                        Value::Object(serde_json::Map::new())
                    });
                }
                *cur = Value::String(new.clone());
                d.set(&keys, J::s(&new)).unwrap();
                let got: Value = serde_json::from_str(&d.text()).unwrap();
                prop_assert_eq!(&got, &expected);
                if let Some(i) = fresh_at {
                    d.remove(&keys[..=i]).unwrap();
                    prop_assert_eq!(d.text(), text.as_str());
                }
            }
        }
    }
}
