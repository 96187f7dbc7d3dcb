SELECT coalesce(tasker._for_each_problem(p.path), '') FROM unnest($1::text[]) WITH ORDINALITY AS p (path, ord) ORDER BY p.ord
