import { runService } from '@crud-master/shared';
import { start } from './app.js';
import { loadConfig } from './config.js';

await runService(() => start(loadConfig()));
