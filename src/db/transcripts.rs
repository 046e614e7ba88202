//! Agent transcripts in the database: the executor ships the lines of its local file in
//! chunks while the agent runs; any instance's dashboard reads them back.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::Db;
use super::entities::transcript_chunks::{self, Column, Entity};

impl Db {
    /// Stores the transcript bytes of task `task_id` starting at `offset` (idempotent).
    pub async fn append_transcript(&self, task_id: i64, offset: u64, data: Vec<u8>) -> Result<(), DbErr> {
        let row = transcript_chunks::ActiveModel {
            task_id: Set(task_id),
            byte_offset: Set(offset as i64),
            data: Set(data),
        };
        let on_conflict = OnConflict::columns([Column::TaskId, Column::ByteOffset]).do_nothing().to_owned();
        Entity::insert(row).on_conflict(on_conflict).try_insert().exec(self.connection()).await?;
        Ok(())
    }

    /// Where the stored transcript of task `task_id` ends.
    pub async fn transcript_end(&self, task_id: i64) -> Result<u64, DbErr> {
        let last = Entity::find()
            .filter(Column::TaskId.eq(task_id))
            .order_by_desc(Column::ByteOffset)
            .one(self.connection())
            .await?;
        Ok(last.map_or(0, |c| c.byte_offset as u64 + c.data.len() as u64))
    }

    /// The stored transcript bytes from `from` (or, with `None`, at most the last `max`
    /// bytes), and the offset they start at.
    pub async fn transcript_bytes(
        &self,
        task_id: i64,
        from: Option<u64>,
        max: u64,
    ) -> Result<(Vec<u8>, u64), DbErr> {
        let query = Entity::find().filter(Column::TaskId.eq(task_id));
        let chunks = match from {
            Some(from) => {
                query
                    .filter(Column::ByteOffset.gte(from as i64))
                    .order_by_asc(Column::ByteOffset)
                    .all(self.connection())
                    .await?
            }
            None => {
                let mut newest = Vec::new();
                let mut total = 0u64;
                for chunk in query.order_by_desc(Column::ByteOffset).all(self.connection()).await? {
                    if total >= max {
                        break;
                    }
                    total += chunk.data.len() as u64;
                    newest.push(chunk);
                }
                newest.reverse();
                newest
            }
        };
        let start = chunks.first().map_or(from.unwrap_or(0), |c| c.byte_offset as u64);
        let mut bytes = Vec::new();
        for chunk in chunks {
            if bytes.len() as u64 >= max {
                break;
            }
            bytes.extend_from_slice(&chunk.data);
        }
        Ok((bytes, start))
    }
}
