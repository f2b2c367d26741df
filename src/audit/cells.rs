//! Every cell of every table of any SQLite database among the scanned files (not only facegate's), read
//! through SQLite itself, whatever the column's declared type: a JPEG whose bytes are split over overflow
//! pages is whole again, and a BLOB in a TEXT column is read as bytes. Each value goes to the byte scanners
//! as a whole value ([`super::scan::find_all`]: so a cell of 128 int8 numbers is a quantised vector).
//!
//! Opens read-only and never writes; a finding names the table, row and column, never the value.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::faces::FaceCheck;
use super::scan::Finding;

/// SQLite's file header.
pub const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Cells shorter than this hold nothing a detector could recognise (64 int8 values is the least).
const MIN_CELL: usize = 64;

/// A finding inside one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CellFinding {
    /// The table.
    pub table: String,
    /// The row's rowid (its position in the table for a table without one).
    pub row: i64,
    /// The column.
    pub column: String,
    /// What was found, at an offset inside the cell's value.
    pub finding: Finding,
}

/// What reading one database gave.
#[derive(Debug, Default)]
pub struct CellScan {
    /// Cells read (of any size).
    pub cells: u64,
    /// Bytes of BLOB and TEXT values given to the scanners.
    pub bytes: u64,
    /// Findings.
    pub findings: Vec<CellFinding>,
}

/// Reads every cell of every table of the database at `path` (with its WAL, when SQLite can read it).
pub fn scan_database(path: &Path, faces: &FaceCheck) -> rusqlite::Result<CellScan> {
    let conn = open_read_only(path)?;
    let tables: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        names
    };
    let mut scan = CellScan::default();
    for table in tables {
        scan_table(&conn, &table, faces, &mut scan)?;
    }
    Ok(scan)
}

/// Read-only, applying the WAL; a database whose WAL cannot be read that way (no shared-memory file and a
/// folder the auditor may not write) is read as the main file alone.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    match conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(conn),
        Err(_) => {
            let uri = format!("file:{}?immutable=1", path.display());
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
        }
    }
}

fn scan_table(conn: &Connection, table: &str, faces: &FaceCheck, scan: &mut CellScan) -> rusqlite::Result<()> {
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    // WITHOUT ROWID tables have no rowid: their rows are numbered as read.
    let (mut stmt, has_rowid) = match conn.prepare(&format!("SELECT rowid, * FROM {quoted}")) {
        Ok(stmt) => (stmt, true),
        Err(_) => (conn.prepare(&format!("SELECT * FROM {quoted}"))?, false),
    };
    let first = usize::from(has_rowid);
    let columns: Vec<String> = stmt.column_names().iter().skip(first).map(|c| (*c).to_owned()).collect();
    let mut rows = stmt.query([])?;
    let mut ordinal = 0i64;
    while let Some(row) = rows.next()? {
        ordinal += 1;
        let id = if has_rowid { row.get::<_, i64>(0).unwrap_or(ordinal) } else { ordinal };
        for (i, column) in columns.iter().enumerate() {
            scan.cells += 1;
            let bytes = match row.get_ref(i + first)? {
                ValueRef::Blob(b) | ValueRef::Text(b) => b,
                _ => continue,
            };
            scan.bytes += bytes.len() as u64;
            if bytes.len() < MIN_CELL {
                continue;
            }
            for finding in super::scan::find_all(bytes, faces) {
                scan.findings.push(CellFinding { table: table.to_owned(), row: id, column: column.clone(), finding });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_over_overflow_pages_and_a_blob_in_a_text_column_are_found_by_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA page_size = 1024; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);").unwrap();
        let img = image::RgbImage::from_fn(160, 160, |x, y| {
            image::Rgb([(x + (x * y * 37) % 23) as u8, (y + (x * 7 + y * 13) % 19) as u8, ((x ^ y) % 64) as u8])
        });
        let mut jpeg = std::io::Cursor::new(Vec::new());
        img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
        let jpeg = jpeg.into_inner();
        assert!(jpeg.len() > 3_000, "spans several 1 KiB pages");
        conn.execute("INSERT INTO notes (id, body) VALUES (7, 'hello'), (9, ?1)", [&jpeg]).unwrap();
        drop(conn);
        // Pages carry 4-byte overflow pointers: the file's bytes do not hold the JPEG in one piece.
        let file = std::fs::read(&path).unwrap();
        assert!(!file.windows(jpeg.len()).any(|w| w == jpeg.as_slice()));
        let scan = scan_database(&path, &FaceCheck::Unavailable("a unit test".into())).unwrap();
        assert_eq!(scan.cells, 4);
        assert_eq!(scan.findings.len(), 1, "{:?}", scan.findings);
        let f = &scan.findings[0];
        assert_eq!((f.table.as_str(), f.row, f.column.as_str(), f.finding.kind), ("notes", 9, "body", "image"));
        assert_eq!(f.finding.detail, "Jpeg 160x160");
    }
}
