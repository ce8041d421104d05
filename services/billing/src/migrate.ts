import { runMigrations } from '@crud-master/shared';
import { loadConfig, MIGRATIONS_DIR } from './config.js';

await runMigrations(() => loadConfig().db, MIGRATIONS_DIR);
