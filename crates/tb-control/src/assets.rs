//! Files compiled into the binary: the dashboard and the OpenAPI document.

/// The dashboard page.
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The dashboard's script (no inline script: the CSP forbids it).
pub(crate) const APP_JS: &str = include_str!("../assets/app.js");
/// The dashboard's styles.
pub(crate) const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The dashboard's icon.
pub(crate) const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");
/// The OpenAPI 3.1 description of the API.
pub(crate) const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");
