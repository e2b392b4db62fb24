CREATE INDEX CONCURRENTLY items_title ON items (title);
