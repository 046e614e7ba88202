//! Agent transcripts in the database: the executor ships the lines of its local file in
//! chunks while the agent runs; any instance's dashboard reads them back.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::transcript_chunks::{self, Column, Entity};
use super::{Db, DbError};

impl Db {
    /// Stores the transcript bytes of task `task_id` starting at `offset` (idempotent).
    pub async fn append_transcript(&self, task_id: i64, offset: u64, data: Vec<u8>) -> Result<(), DbError> {
        let row = transcript_chunks::ActiveModel {
            task_id: Set(task_id),
            byte_offset: Set(offset as i64),
            data: Set(data),
        };
        let on_conflict = OnConflict::columns([Column::TaskId, Column::ByteOffset]).do_nothing().to_owned();
        Entity::insert(row).on_conflict(on_conflict).try_insert().exec(&self.conn).await?;
        Ok(())
    }

    /// Where the stored transcript of task `task_id` ends.
    pub async fn transcript_end(&self, task_id: i64) -> Result<u64, DbError> {
        let last = Entity::find()
            .filter(Column::TaskId.eq(task_id))
            .order_by_desc(Column::ByteOffset)
            .one(&self.conn)
            .await?;
        Ok(last.map_or(0, |c| c.byte_offset as u64 + c.data.len() as u64))
    }

    /// The stored transcript bytes from `from` on, at most about `max` of them (whole
    /// chunks), and the offset they start at.
    pub async fn transcript_bytes(
        &self,
        task_id: i64,
        from: u64,
        max: u64,
    ) -> Result<(Vec<u8>, u64), DbError> {
        let mut bytes = Vec::new();
        let mut start = None;
        let mut next = from as i64;
        while (bytes.len() as u64) < max {
            let rows = Entity::find()
                .filter(Column::TaskId.eq(task_id))
                .filter(Column::ByteOffset.gte(next))
                .order_by_asc(Column::ByteOffset)
                .limit(BATCH)
                .all(&self.conn)
                .await?;
            let last_batch = (rows.len() as u64) < BATCH;
            for chunk in rows {
                if (bytes.len() as u64) >= max {
                    break;
                }
                start.get_or_insert(chunk.byte_offset as u64);
                next = chunk.byte_offset + chunk.data.len() as i64;
                bytes.extend_from_slice(&chunk.data);
            }
            if last_batch {
                break;
            }
        }
        Ok((bytes, start.unwrap_or(from)))
    }

    /// The last `max_lines` complete lines of the stored transcript (fewer when they would
    /// take more than `max_bytes`), and the offset they start at. Reads the chunks newest
    /// first and stops as soon as it has enough, so a long transcript costs no more than a
    /// short one.
    pub async fn transcript_tail(
        &self,
        task_id: i64,
        max_lines: usize,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, u64), DbError> {
        let mut newest = Vec::new();
        let (mut newlines, mut total) = (0usize, 0u64);
        let mut before = i64::MAX;
        // Chunks range from one line to 256 KiB: ask for few first, then more.
        let mut batch = 1;
        loop {
            let rows = Entity::find()
                .filter(Column::TaskId.eq(task_id))
                .filter(Column::ByteOffset.lt(before))
                .order_by_desc(Column::ByteOffset)
                .limit(batch)
                .all(&self.conn)
                .await?;
            let reached_start = (rows.len() as u64) < batch;
            for chunk in rows {
                if newlines > max_lines || total >= max_bytes {
                    break;
                }
                newlines += chunk.data.iter().filter(|&&b| b == b'\n').count();
                total += chunk.data.len() as u64;
                before = chunk.byte_offset;
                newest.push(chunk);
            }
            if reached_start || newlines > max_lines || total >= max_bytes {
                break;
            }
            batch = (batch * 2).min(BATCH);
        }
        newest.reverse();
        let start = newest.first().map_or(0, |c| c.byte_offset as u64);
        let mut bytes = Vec::with_capacity(total as usize);
        for chunk in newest {
            bytes.extend_from_slice(&chunk.data);
        }
        let cut = tail_cut(&bytes, start, max_lines, max_bytes);
        bytes.drain(..cut);
        Ok((bytes, start + cut as u64))
    }
}

/// Chunks read per query.
const BATCH: u64 = 32;

/// Where in `bytes` (which start at offset `start` of the transcript) the last `max_lines`
/// complete lines begin, keeping at most `max_bytes`. A line that begins before what is
/// kept, or may (the bytes start after the beginning and no earlier newline is in hand),
/// is left out whole.
fn tail_cut(bytes: &[u8], start: u64, max_lines: usize, max_bytes: u64) -> usize {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let window = complete.saturating_sub(usize::try_from(max_bytes).unwrap_or(usize::MAX));
    // The newline just before the oldest line kept: the (max_lines + 1)-th from the end.
    let boundary = bytes[..complete].iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(max_lines);
    match boundary {
        Some((i, _)) if i >= window => i + 1,
        None if window == 0 && start == 0 => 0,
        _ => {
            let from = window.saturating_sub(1);
            bytes[from..complete].iter().position(|&b| b == b'\n').map_or(complete, |i| from + i + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tail_cut;

    const TEXT: &[u8] = b"one\ntwo\nthree\nfour\npartial";

    #[test]
    fn the_tail_starts_at_the_oldest_line_kept() {
        assert_eq!(&TEXT[tail_cut(TEXT, 0, 2, 1 << 20)..], b"three\nfour\npartial");
        assert_eq!(tail_cut(TEXT, 0, 4, 1 << 20), 0, "exactly as many lines as asked for");
        assert_eq!(tail_cut(TEXT, 0, 10, 1 << 20), 0, "fewer lines than asked for");
        assert_eq!(tail_cut(b"", 0, 10, 1 << 20), 0);
    }

    #[test]
    fn a_line_that_may_be_cut_is_left_out() {
        // Bytes that start inside the transcript may start inside a line.
        assert_eq!(&TEXT[tail_cut(TEXT, 100, 10, 1 << 20)..], b"two\nthree\nfour\npartial");
        // Within 10 bytes of the end of the last complete line: "three\n" would cross it.
        assert_eq!(&TEXT[tail_cut(TEXT, 0, 10, 10)..], b"four\npartial");
        assert_eq!(&TEXT[tail_cut(TEXT, 0, 10, 11)..], b"three\nfour\npartial");
        assert_eq!(&TEXT[tail_cut(TEXT, 0, 10, 2)..], b"partial", "no whole line fits");
    }
}
