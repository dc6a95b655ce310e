//! Aligned text columns, kubectl style: upper-case headers, cells padded to
//! the widest in their column, three spaces between columns.

/// Spaces between columns.
const GAP: usize = 3;

/// A table being built row by row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank, extra cells are kept).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Keeps the first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        self.rows.truncate(rows);
    }

    /// The table as text, one line per row, each ending with a newline;
    /// trailing spaces trimmed.
    pub fn render(&self) -> String {
        let lines = std::iter::once(&self.headers).chain(&self.rows);
        let columns = lines.clone().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in lines.clone() {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                text.push_str(cell);
                if i + 1 < line.len() {
                    let pad = widths[i] - cell.chars().count() + GAP;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_on_the_widest_cell() {
        let mut t = Table::new(&["NAME", "CPU"]);
        t.row(vec!["a-long-name".into(), "0.250".into()]);
        t.row(vec!["b".into(), "12.5".into()]);
        assert_eq!(
            t.render(),
            "NAME          CPU\n\
             a-long-name   0.250\n\
             b             12.5\n"
        );
    }

    #[test]
    fn multibyte_cells_count_as_one_column_each() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["✓✓".into(), "x".into()]);
        assert_eq!(t.render(), "A    B\n✓✓   x\n");
    }
}
