import { createRoot } from 'react-dom/client';
import '@comfyorg/litegraph/style.css';
import './styles.css';
import { App } from './ui/App.js';

createRoot(document.getElementById('root')!).render(<App />);
