SELECT coalesce(tasker._when_problem(c.cond), '') FROM unnest($1::text[]) WITH ORDINALITY AS c (cond, ord) ORDER BY c.ord
