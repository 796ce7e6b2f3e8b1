-- v7 -> v8 (compatible with v1+): When a user's receipts came on through the bot
ALTER TABLE user_setting ADD COLUMN receipts_on_since BIGINT NOT NULL DEFAULT 0;
