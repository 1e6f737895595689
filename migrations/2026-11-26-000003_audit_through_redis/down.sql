DROP INDEX delivery_attempts_once;
