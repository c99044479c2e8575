-- forgotten_validation_pages: the Data Docs pages of validations that listed a forgotten user's id (from
-- `forget_user`'s temp table); the caller deletes the files.
select data_docs from forgotten_validations where data_docs is not null
