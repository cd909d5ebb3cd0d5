# Import of the first, script-based study's judged answers (issue 10).
