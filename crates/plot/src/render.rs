//! SVG to PNG through resvg, with system fonts.

use crate::{PlotError, Result};
use resvg::usvg::fontdb::Database;
use resvg::{tiny_skia, usvg};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};

/// Scale [`write_chart`] renders PNGs at: 2x stays sharp in print and on high-DPI screens.
pub const PNG_SCALE: f32 = 2.0;

/// Families named in the SVG before the generic `sans-serif`.
const PREFERRED_FAMILIES: [&str; 4] = ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"];

/// Guards against allocating absurd pixmaps from a mistyped scale.
const MAX_SIDE: u32 = 16_384;

/// System fonts, loaded once per process (scanning the font folders is slow).
fn font_db() -> &'static Arc<Database> {
    static DB: OnceLock<Arc<Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = Database::new();
        db.load_system_fonts();
        fall_back_to_any_font(&mut db);
        Arc::new(db)
    })
}

/// Without any preferred family, let `sans-serif` mean whatever font is installed,
/// so that text still renders instead of silently vanishing.
fn fall_back_to_any_font(db: &mut Database) {
    let family = |f: &usvg::fontdb::FaceInfo| f.families.first().map(|(name, _)| name.clone());
    let has_preferred = db.faces().filter_map(family).any(|name| PREFERRED_FAMILIES.contains(&name.as_str()));
    let any = db.faces().find_map(family);
    if let Some(name) = any.filter(|_| !has_preferred) {
        db.set_sans_serif_family(name);
    }
}

/// Whether any system font was found; without one, PNGs are drawn without their text.
pub fn fonts_available() -> bool {
    !font_db().is_empty()
}

/// Rasterizes an SVG document; `scale` 2.0 gives twice the SVG's pixel size.
/// Succeeds without fonts too, but then warns once on stderr: the text is missing.
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>> {
    if !fonts_available() {
        static WARN: Once = Once::new();
        WARN.call_once(|| eprintln!("valuedrift-plot: warning: no system fonts found, PNG charts will have no text"));
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(PlotError::Scale(scale));
    }
    let options = usvg::Options { fontdb: font_db().clone(), ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &options)?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or(PlotError::Scale(scale))?;
    if size.width() > MAX_SIDE || size.height() > MAX_SIDE {
        return Err(PlotError::Scale(scale));
    }
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or(PlotError::Scale(scale))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| PlotError::Png(e.to_string()))
}

/// Writes `<stem>.svg` and `<stem>.png` (at [`PNG_SCALE`]), creating the folder if needed.
pub fn write_chart(svg: &str, stem: &Path) -> Result<()> {
    let png = svg_to_png(svg, PNG_SCALE)?;
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir.to_path_buf(), e))?;
    }
    for (ext, bytes) in [("svg", svg.as_bytes()), ("png", png.as_slice())] {
        // Appended rather than `with_extension`, which would eat a dotted stem like "run.v2".
        let mut path = stem.as_os_str().to_owned();
        path.push(format!(".{ext}"));
        let path = PathBuf::from(path);
        std::fs::write(&path, bytes).map_err(|e| io_error(path, e))?;
    }
    Ok(())
}

fn io_error(path: PathBuf, source: std::io::Error) -> PlotError {
    PlotError::Io { path, source }
}
