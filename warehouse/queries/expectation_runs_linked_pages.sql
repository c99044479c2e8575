-- expectation_runs_linked_pages: validations whose Data Docs page the warehouse links; the site keeps only
-- these (selfmodel.quality.prune_data_docs: a forgotten user's validations lose their link).
select validation_id from expectation_runs where data_docs is not null
