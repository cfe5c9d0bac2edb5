//! Tables of numbers that drop their least important columns when the terminal is narrow.

use ratatui::{
    buffer::Buffer,
    layout::{Alignment, Constraint, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Row, Table, Widget},
};

/// A column: its heading, its width, and its rank (0 = always shown, higher = dropped first).
#[derive(Clone, Copy, Debug)]
pub struct Col {
    pub name: &'static str,
    pub width: u16,
    pub rank: u8,
}

pub const fn col(name: &'static str, width: u16, rank: u8) -> Col {
    Col { name, width, rank }
}

/// Indices of the columns that fit in `width` (one space between columns), in order.
pub fn fit(cols: &[Col], width: u16) -> Vec<usize> {
    let mut ranks: Vec<u8> = cols.iter().map(|c| c.rank).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut keep: Vec<usize> = Vec::new();
    for rank in ranks {
        let candidate: Vec<usize> = (0..cols.len()).filter(|&i| cols[i].rank <= rank).collect();
        let need: u16 = candidate
            .iter()
            .map(|&i| cols[i].width + 1)
            .sum::<u16>()
            .saturating_sub(1);
        if need > width && !keep.is_empty() {
            break;
        }
        keep = candidate;
    }
    keep
}

/// One table cell's text and style.
pub struct Val {
    pub text: String,
    pub style: Style,
}

pub fn val(text: impl Into<String>) -> Val {
    Val {
        text: text.into(),
        style: Style::new(),
    }
}

impl Val {
    pub fn styled(mut self, style: Style) -> Val {
        self.style = style;
        self
    }
}

/// The first `text_cols` columns are left-aligned text, the others right-aligned numbers.
pub struct NumTable<'a> {
    pub cols: &'a [Col],
    pub text_cols: usize,
    pub rows: Vec<Vec<Val>>,
    /// Heading of this column gets a ▼ (the sort order).
    pub sorted_by: Option<usize>,
}

impl Widget for NumTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let keep = fit(self.cols, area.width);
        let align = |i: usize| {
            if i < self.text_cols {
                Alignment::Left
            } else {
                Alignment::Right
            }
        };
        let header = Row::new(keep.iter().map(|&i| {
            let name = if self.sorted_by == Some(i) {
                format!("{}▼", self.cols[i].name)
            } else {
                self.cols[i].name.to_string()
            };
            Cell::from(Line::from(name).alignment(align(i)))
        }))
        .style(
            Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
        );
        let rows = self.rows.into_iter().map(|r| {
            let mut cells: Vec<Option<Val>> = r.into_iter().map(Some).collect();
            Row::new(keep.iter().map(|&i| {
                let v = cells
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or_else(|| val(""));
                Cell::from(Line::from(v.text).alignment(align(i))).style(v.style)
            }))
        });
        let widths = keep.iter().map(|&i| {
            if i == 0 {
                Constraint::Min(self.cols[i].width)
            } else {
                Constraint::Length(self.cols[i].width)
            }
        });
        Widget::render(
            Table::new(rows, widths).header(header).column_spacing(1),
            area,
            buf,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_drop_high_ranked_columns_first_but_keep_rank_zero() {
        let cols = [
            col("name", 10, 0),
            col("a", 5, 0),
            col("b", 5, 2),
            col("c", 5, 1),
        ];
        assert_eq!(fit(&cols, 80), [0, 1, 2, 3]);
        assert_eq!(fit(&cols, 22), [0, 1, 3]);
        assert_eq!(fit(&cols, 16), [0, 1]);
        assert_eq!(
            fit(&cols, 3),
            [0, 1],
            "rank 0 stays even when it does not fit"
        );
    }
}
