import { runMigrations } from '@crud-master/shared/database';
import { loadConfig, MIGRATIONS_DIR } from './config.js';

await runMigrations(() => loadConfig().db, MIGRATIONS_DIR);
