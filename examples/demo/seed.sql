-- Seed data of the demo's embedded SQLite database. Portcullis builds
-- examples/demo/.data/demo.sqlite from this script the first time the demo
-- source is used (the file is gitignored; delete it to start over).
--
-- A small community chat: who talks most (the guide's get_top_chatters), in
-- which channels, and when.

CREATE TABLE channels (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    topic       TEXT,
    is_archived BOOLEAN NOT NULL DEFAULT 0
);

CREATE TABLE chatters (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    message_count INTEGER NOT NULL DEFAULT 0,
    joined_at     TEXT NOT NULL,            -- ISO 8601
    is_moderator  BOOLEAN NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    chatter_id INTEGER NOT NULL REFERENCES chatters(id),
    body       TEXT NOT NULL,
    posted_at  TEXT NOT NULL,               -- ISO 8601
    reactions  INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX messages_by_channel ON messages(channel_id, posted_at);

INSERT INTO channels (id, name, topic, is_archived) VALUES
    (1, 'general',  'Anything about the project', 0),
    (2, 'help',     'Questions and answers', 0),
    (3, 'releases', 'Release announcements', 0),
    (4, 'random',   NULL, 1);

INSERT INTO chatters (id, username, display_name, message_count, joined_at, is_moderator) VALUES
    (1,  'ada',      'Ada L.',        1342, '2023-01-04T09:12:00Z', 1),
    (2,  'grace',    'Grace H.',      1187, '2023-01-05T14:30:00Z', 1),
    (3,  'linus',    NULL,             954, '2023-02-11T08:00:00Z', 0),
    (4,  'margaret', 'Margaret H.',    871, '2023-03-02T17:45:00Z', 0),
    (5,  'ken',      'Ken T.',         640, '2023-03-19T11:05:00Z', 0),
    (6,  'barbara',  'Barbara L.',     512, '2023-04-22T20:10:00Z', 0),
    (7,  'dennis',   NULL,             433, '2023-05-30T06:25:00Z', 0),
    (8,  'frances',  'Frances A.',     298, '2023-07-14T13:00:00Z', 0),
    (9,  'yukihiro', 'まつもと ゆきひろ', 187, '2023-09-01T02:40:00Z', 0),
    (10, 'sophie',   'Sophie W.',       96, '2024-01-08T15:15:00Z', 0),
    (11, 'edsger',   'Edsger D.',       41, '2024-02-29T10:00:00Z', 0),
    (12, 'lurker',   NULL,               0, '2024-06-01T00:00:00Z', 0);

INSERT INTO messages (channel_id, chatter_id, body, posted_at, reactions) VALUES
    (1, 1,  'Welcome everyone! Please read the pinned rules.',            '2024-06-01T09:00:00Z', 14),
    (1, 2,  'The nightly build is green again.',                          '2024-06-01T09:05:00Z', 6),
    (2, 3,  'How do I configure a read-only root?',                       '2024-06-01T10:12:00Z', 2),
    (2, 1,  'Set writable = false (the default) on the [[files]] root.',  '2024-06-01T10:15:00Z', 9),
    (3, 2,  'v0.1.0 is out: files, prompts and resources.',               '2024-06-02T16:00:00Z', 31),
    (1, 4,  'Anyone benchmarked the HTTP transport?',                     '2024-06-03T08:30:00Z', 1),
    (1, 5,  'p99 under 2 ms on loopback here.',                           '2024-06-03T08:41:00Z', 5),
    (2, 9,  'Unicode works too: こんにちは 👋',                            '2024-06-03T12:00:00Z', 7),
    (2, 6,  'Is there a way to cap result sizes?',                        '2024-06-04T09:20:00Z', 0),
    (2, 2,  'Yes: max_rows and max_result_bytes per SQL source.',         '2024-06-04T09:22:00Z', 4),
    (3, 1,  'v0.2.0 adds the SQL pack.',                                  '2024-06-10T16:00:00Z', 42),
    (1, 7,  'Nice work on the release!',                                  '2024-06-10T16:05:00Z', 3),
    (1, 8,  'Thanks for the quick fix.',                                  '2024-06-11T11:11:00Z', 2),
    (1, 10, 'First message here, hello!',                                 '2024-06-12T18:00:00Z', 8),
    (2, 11, 'Why is the ad-hoc query tool read-only?',                    '2024-06-13T07:00:00Z', 0),
    (2, 1,  'Because assistants should not be able to write by accident.', '2024-06-13T07:03:00Z', 12);
