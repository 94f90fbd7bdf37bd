// The lens on Gemma 2 and Gemma 3 as torch.onnx.export writes them (test/model/torch-parity.ts):
// sandwich norms, softcaps, sliding windows, Gemma 3's q/k norms and local rotary base.
import { torchParityTests } from './torch-parity.js';

torchParityTests(['gemma2', 'gemma3_text']);
